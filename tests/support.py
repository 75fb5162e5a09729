"""Test helpers shared by every layer: a real SMTP server, databases, and small utilities."""

from __future__ import annotations

import asyncio
import email
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from typing import Any

import psycopg
from aiosmtpd.controller import Controller
from sqlalchemy.engine import make_url

TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_-]+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ReceivedMail:
    to: list[str]
    message: Message

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, content_type: str) -> str:
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part.get_payload(decode=True).decode()
        raise AssertionError(f"no {content_type} part")

    @property
    def text(self) -> str:
        return self.part("text/plain")

    @property
    def token(self) -> str:
        match = TOKEN_IN_LINK.search(self.text)
        assert match, self.text
        return match.group(1)


class Mailbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMail] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(
                ReceivedMail(list(envelope.rcpt_tos), email.message_from_bytes(envelope.content))
            )
        return "250 OK"

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def to(self, address: str) -> list[ReceivedMail]:
        with self._lock:
            return [m for m in self.messages if address.lower() in (t.lower() for t in m.to)]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"expected {count} mail(s) to {address}, got {len(self.to(address))}")


class RefusingMailbox(Mailbox):
    """A Mailbox that can be told to refuse: set `rcpt_reply` or `data_reply` to an SMTP answer
    ("451 4.3.0 Try again later", "550 5.1.1 No such user") and every mail gets it at that step.
    """

    def __init__(self) -> None:
        super().__init__()
        self.rcpt_reply: str | None = None
        self.data_reply: str | None = None
        # Seconds to sit on a received message before saying 250: a verdict that comes late.
        self.data_delay = 0.0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.data_delay)
        return reply

    def accept(self) -> None:
        self.rcpt_reply = self.data_reply = None
        self.data_delay = 0.0


class SilentServer:
    """A TCP port that accepts connections and never says a word: a hung SMTP server.

    The kernel completes each handshake from the listen backlog; nobody ever reads or writes.
    """

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        self.port: int = self._socket.getsockname()[1]

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SMTPServer:
    def __init__(self, mailbox: Mailbox | None = None) -> None:
        self.mailbox = mailbox or Mailbox()
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def create_postgres_database(base_url: str) -> str:
    """Create an empty database next to `base_url`'s and return its URL."""
    url = make_url(base_url)
    name = f"idp_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(db_url: str) -> None:
    url = make_url(db_url)
    maintenance = url.set(database="postgres")
    with psycopg.connect(_libpq(maintenance), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def _libpq(url: Any) -> str:
    parts = [f"dbname={url.database}", f"host={url.host or '127.0.0.1'}"]
    if url.port:
        parts.append(f"port={url.port}")
    if url.username:
        parts.append(f"user={url.username}")
    if url.password:
        parts.append(f"password={url.password}")
    return " ".join(parts)
