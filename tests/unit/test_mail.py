"""MailService (compose, links), SMTPBackend against a real SMTP server, LogBackend."""

from __future__ import annotations

import logging

import pytest
from jinja2 import ChoiceLoader, DictLoader

from idp.services.mail import (
    ACCOUNT_EXISTS,
    PASSWORD_RESET_MAIL,
    VERIFY_EMAIL_MAIL,
    LogBackend,
    MailService,
    OutgoingMail,
    SMTPBackend,
)
from tests.support import free_port

FRONTEND = "https://front.example/app"
TO = "ada@example.com"
MESSAGES = [
    (VERIFY_EMAIL_MAIL, {"token": "v-tok", "reset_token": "r-tok"}),
    (PASSWORD_RESET_MAIL, {"token": "r-tok"}),
    (ACCOUNT_EXISTS, {}),
]


def compose(message: str, context: dict) -> OutgoingMail:
    return MailService(LogBackend(), FRONTEND).compose(message, TO, context)


@pytest.mark.parametrize(
    ("message", "context", "links"),
    [
        (
            VERIFY_EMAIL_MAIL,
            {"token": "v-tok", "reset_token": "r-tok"},
            [f"{FRONTEND}/verify-email?token=v-tok", f"{FRONTEND}/reset-password?token=r-tok"],
        ),
        (PASSWORD_RESET_MAIL, {"token": "r-tok"}, [f"{FRONTEND}/reset-password?token=r-tok"]),
        (ACCOUNT_EXISTS, {}, [f"{FRONTEND}/login", f"{FRONTEND}/forgot-password"]),
    ],
)
def test_links_are_built_on_the_frontend_url_in_both_parts(app, message, context, links):
    with app.app_context():
        mail = compose(message, context)
    assert mail.to == TO
    for link in links:
        assert link in mail.text
        assert f'href="{link}"' in mail.html.replace("&amp;", "&")
    # No link points at the server itself.
    assert "idp.test" not in mail.text + mail.html


def test_the_verification_mail_carries_the_reset_link_below_the_verification_link(app):
    with app.app_context():
        mail = compose(VERIFY_EMAIL_MAIL, {"token": "v-tok", "reset_token": "r-tok"})
    assert mail.text.index("verify-email?token=v-tok") < mail.text.index("token=r-tok")
    assert "set your own password" in mail.text


def test_a_verification_mail_queued_without_a_reset_token_has_no_dangling_reset_link(app):
    with app.app_context():
        mail = compose(VERIFY_EMAIL_MAIL, {"token": "v-tok"})
    assert "verify-email?token=v-tok" in mail.text
    assert "reset-password" not in mail.text + mail.html


@pytest.mark.parametrize(("message", "context"), MESSAGES)
def test_a_mail_never_contains_a_name_even_when_its_context_has_one(app, message, context):
    names = {"first_name": "Mallory", "last_name": "Click-here-evil.example", "name": "Eve"}
    with app.app_context():
        mail = compose(message, {**context, **names})
    for value in names.values():
        assert value not in mail.subject + mail.text + mail.html


@pytest.mark.parametrize(("message", "context"), MESSAGES)
def test_the_subject_is_one_line_whatever_the_template_says(app, message, context):
    loader = DictLoader(
        {f"email/{message}/subject.txt": "  Confirm\n\nyour\taddress\r\nBcc: eve@example.com\n"}
    )
    app.jinja_env.loader = ChoiceLoader([loader, app.jinja_env.loader])
    with app.app_context():
        mail = compose(message, context)
    assert mail.subject == "Confirm your address Bcc: eve@example.com"


@pytest.mark.parametrize(("message", "context"), MESSAGES)
def test_the_shipped_subjects_are_short_single_lines(app, message, context):
    with app.app_context():
        subject = compose(message, context).subject
    assert subject and subject == subject.strip() and len(subject) < 80
    assert not set(subject) & {"\n", "\r", "\t"}


def test_an_unknown_mail_is_refused(app):
    with app.app_context(), pytest.raises(ValueError, match="unknown mail"):
        compose("newsletter", {})


def test_smtp_backend_delivers_text_and_html_to_the_recipient(app, mailbox):
    with app.app_context():
        service = MailService(SMTPBackend(timeout=5), FRONTEND)
        service.send(service.compose(PASSWORD_RESET_MAIL, TO, {"token": "r-tok"}))
    (received,) = mailbox.wait_for(TO)
    assert received.to == [TO]
    assert received.subject == "Reset your password"
    assert f"{FRONTEND}/reset-password?token=r-tok" in received.text
    assert f"{FRONTEND}/reset-password?token=r-tok" in received.part("text/html")
    assert received.token == "r-tok"


def test_smtp_backend_raises_an_os_error_when_nothing_listens(make_app):
    app = make_app(IDP_MAIL_PORT=free_port())
    with app.app_context(), pytest.raises(OSError):
        SMTPBackend(timeout=2).send(OutgoingMail(TO, "s", "t", "<p>h</p>"))


def test_log_backend_prints_the_mail_to_the_log(caplog):
    mail = OutgoingMail(TO, "Reset your password", "open this: https://x/?token=abc", "<p></p>")
    with caplog.at_level(logging.INFO, "idp.mail.console"):
        LogBackend().send(mail)
    (record,) = [r for r in caplog.records if r.name == "idp.mail.console"]
    assert TO in record.getMessage()
    assert "Reset your password" in record.getMessage()
    assert "token=abc" in record.getMessage()
