"""Mail rendering and delivery: templates under templates/email/<message>/, SMTP or the log.

Nothing here decides when a mail goes out: idp.services.outbox queues each mail with the change
that caused it and calls send() after the commit.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
from dataclasses import dataclass
from typing import Any, Protocol

import flask_mail
from email_validator import validate_email
from flask import current_app, render_template

# The mails the server sends; each names a folder under templates/email/.
VERIFY_EMAIL_MAIL = "verify_email"
PASSWORD_RESET_MAIL = "password_reset"
ACCOUNT_EXISTS = "account_exists"


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str


def smtp_address(address: str) -> str:
    """The address as SMTP carries it: an internationalised domain in its IDNA 2008 ASCII form.

    flask-mail would encode a Unicode domain itself, with Python's IDNA 2003 codec, which maps
    "ß" to "ss" (and final sigma to sigma): mail for an account at straße.de would go to strasse.de,
    another domain with another owner, who could then verify or reset that account. Local
    parts are ASCII (registration refuses others), so only the domain changes.
    """
    if address.isascii():
        return address
    return validate_email(address, check_deliverability=False, allow_smtputf8=False).ascii_email


class MailBackend(Protocol):
    def send(self, mail: OutgoingMail) -> None: ...


class SMTPBackend:
    """Deliver through flask-mail, with a connect/read timeout so a hung server cannot stall us."""

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout

    def send(self, mail: OutgoingMail) -> None:
        message = flask_mail.Message(
            subject=mail.subject, recipients=[smtp_address(mail.to)], body=mail.text, html=mail.html
        )
        state = current_app.extensions["mail"]  # flask-mail's settings for this app
        with _TimeoutConnection(state, self.timeout) as connection:
            message.send(connection)


class LogBackend:
    """Development default: print the mail to the log instead of sending it.

    The log then holds live verification and reset links, which is what a developer wants and
    why production must configure IDP_MAIL_SERVER.
    """

    logger = logging.getLogger("idp.mail.console")

    def send(self, mail: OutgoingMail) -> None:
        self.logger.info("mail to %s: %s\n%s", mail.to, mail.subject, mail.text)


class MailMaybeSent(Exception):
    """The connection failed after the message was handed over, before the server's verdict:
    the server may have accepted the mail, so sending it again could deliver it twice."""


class _HandOverAware:
    """Tell a failure before the message was handed over (safe to retry) from one after it."""

    def data(self, msg: Any) -> tuple[int, bytes]:
        try:
            return super().data(msg)  # type: ignore[misc]
        except smtplib.SMTPResponseException:
            raise  # the server's own verdict (4xx/5xx): not taken
        except (OSError, smtplib.SMTPException) as exc:
            raise MailMaybeSent() from exc


class _SMTP(_HandOverAware, smtplib.SMTP):
    pass


class _SMTPSSL(_HandOverAware, smtplib.SMTP_SSL):
    pass


class _TimeoutConnection(flask_mail.Connection):
    def __init__(self, mail: Any, timeout: int) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def __exit__(self, *exc_info: Any) -> None:
        # flask-mail says QUIT even after a failure, on a connection that may be gone, and the
        # error of that QUIT would replace the one that tells what happened. After a 250 the
        # mail is sent whatever QUIT says.
        if self.host is not None:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.host.quit()

    def configure_host(self) -> smtplib.SMTP:
        cls = _SMTPSSL if self.mail.use_ssl else _SMTP
        host = cls(self.mail.server, self.mail.port, timeout=self.timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class MailService:
    """Turn an outbox row's message name and context into a mail, and hand it to the backend."""

    def __init__(self, backend: MailBackend, frontend_url: str) -> None:
        self.backend = backend
        self.frontend_url = frontend_url

    def compose(self, message: str, to: str, context: dict[str, Any]) -> OutgoingMail:
        """Render templates/email/<message>/ for one recipient; links are built here."""
        context = {**context, **self._links(message, context)}
        return OutgoingMail(
            to=to,
            # A subject is one line, whatever a template says.
            subject=" ".join(render_template(f"email/{message}/subject.txt", **context).split()),
            text=render_template(f"email/{message}/body.txt", **context),
            html=render_template(f"email/{message}/body.html", **context),
        )

    def send(self, mail: OutgoingMail) -> None:
        """Deliver now; raises OSError or smtplib.SMTPException when the server did not take it,
        MailMaybeSent when nobody can tell."""
        self.backend.send(mail)

    def _links(self, message: str, context: dict[str, Any]) -> dict[str, str]:
        if message == VERIFY_EMAIL_MAIL:
            # Valid 48 hours; the reset link (24 hours) is for a mailbox whose owner did not
            # register: it takes the account over from whoever did.
            links = {"link": f"{self.frontend_url}/verify-email?token={context['token']}"}
            if "reset_token" in context:  # absent from mails queued by an older release
                links["reset_link"] = (
                    f"{self.frontend_url}/reset-password?token={context['reset_token']}"
                )
            return links
        if message == PASSWORD_RESET_MAIL:
            # Valid 24 hours.
            return {"link": f"{self.frontend_url}/reset-password?token={context['token']}"}
        if message == ACCOUNT_EXISTS:
            return {
                "login_link": f"{self.frontend_url}/login",
                "reset_link": f"{self.frontend_url}/forgot-password",
            }
        raise ValueError(f"unknown mail {message!r}")
