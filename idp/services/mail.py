"""Transactional mail: templates under templates/email/<message>/, sent over SMTP or to the log.

A failed delivery is logged and reported to the caller as False; it never undoes the account
change that caused the mail (the user can ask for the mail again).
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from typing import Any, Protocol

import flask_mail
from flask import current_app, render_template

from idp.services.throttle import Throttle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingMail:
    to: str
    subject: str
    text: str
    html: str


class MailBackend(Protocol):
    def send(self, mail: OutgoingMail) -> None: ...


class SMTPBackend:
    """Deliver through flask-mail, with a connect/read timeout so a hung server cannot stall us."""

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout

    def send(self, mail: OutgoingMail) -> None:
        message = flask_mail.Message(
            subject=mail.subject, recipients=[mail.to], body=mail.text, html=mail.html
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


class _TimeoutConnection(flask_mail.Connection):
    def __init__(self, mail: Any, timeout: int) -> None:
        super().__init__(mail)
        self.timeout = timeout

    def configure_host(self) -> smtplib.SMTP:
        cls = smtplib.SMTP_SSL if self.mail.use_ssl else smtplib.SMTP
        host = cls(self.mail.server, self.mail.port, timeout=self.timeout)
        if self.mail.use_tls:
            host.starttls()
        if self.mail.username and self.mail.password:
            host.login(self.mail.username, self.mail.password)
        return host


class MailService:
    """Render and send the server's mails, at most `throttle`'s limit per address."""

    def __init__(self, backend: MailBackend, frontend_url: str, throttle: Throttle) -> None:
        self.backend = backend
        self.frontend_url = frontend_url
        self.throttle = throttle

    def send_verification_email(self, to: str, first_name: str, token: str) -> bool:
        """Mail the link that verifies an address (valid 48 hours)."""
        link = f"{self.frontend_url}/verify-email?token={token}"
        return self._send("verify_email", to, first_name=first_name, link=link)

    def send_password_reset_email(self, to: str, first_name: str, token: str) -> bool:
        """Mail the link that sets a new password (valid 24 hours)."""
        link = f"{self.frontend_url}/reset-password?token={token}"
        return self._send("password_reset", to, first_name=first_name, link=link)

    def send_account_exists_email(self, to: str, first_name: str) -> bool:
        """Tell an owner that someone tried to register their address again."""
        return self._send(
            "account_exists",
            to,
            first_name=first_name,
            login_link=f"{self.frontend_url}/login",
            reset_link=f"{self.frontend_url}/forgot-password",
        )

    def _send(self, message: str, to: str, **context: Any) -> bool:
        # Silent cap: the caller's answer must not change, or it would reveal the account.
        if not self.throttle.hit(to.casefold()):
            log.warning("mail %s not sent: per-address limit reached", message)
            return False
        mail = OutgoingMail(
            to=to,
            # A subject is one line, whatever a template says.
            subject=" ".join(render_template(f"email/{message}/subject.txt", **context).split()),
            text=render_template(f"email/{message}/body.txt", **context),
            html=render_template(f"email/{message}/body.html", **context),
        )
        try:
            self.backend.send(mail)
        except (OSError, smtplib.SMTPException) as exc:
            # The link is a secret: log what failed, never the message.
            log.error("mail %s could not be delivered: %s", message, type(exc).__name__)
            return False
        return True
