"""What a user grants a client: authorization codes (single use, 60 s) and remembered consents.

A code is stored as its SHA-256 and bound to the client, redirect URI, PKCE challenge, nonce and
browser session it was issued for. Redeeming it opens a refresh session tied to that browser
session; a second redemption is refused and revokes what the first one minted (RFC 6749
4.1.2, RFC 9700 4.5).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, delete, select, update
from sqlalchemy.orm import aliased

from idp import audit
from idp.errors import InvalidAuthorizationCode, NotFound
from idp.extensions import db
from idp.models import (
    AuthorizationCode,
    BrowserSession,
    Consent,
    OAuthClient,
    RefreshSession,
    User,
)
from idp.services.secret_tokens import digest, new_secret
from idp.services.sessions import SessionService, TokenPair
from idp.transaction import after_commit

CODE_MAX = 64
CLIENT_ID_MAX = 64
CODE_REUSED = "code_reused"
OFFLINE_ACCESS = "offline_access"


@dataclass(frozen=True)
class StoredCode:
    """A stored code as its redemption needs it: its columns, its user, its browser session's."""

    id: int
    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    resource: str | None
    auth_time: datetime
    expires_at: datetime
    used_at: datetime | None
    refresh_session_id: int | None
    browser_session_id: int | None
    browser_session_public_id: str | None
    browser_session_ended_at: datetime | None
    user: User


@dataclass(frozen=True)
class Redemption:
    """What a redeemed code gave: the tokens and what the ID token needs to say."""

    tokens: TokenPair
    user: User
    nonce: str | None
    auth_time: datetime
    browser_session_id: str | None


class AuthorizationService:
    """Issue and redeem codes; remember and withdraw consents."""

    def __init__(self, sessions: SessionService, code_ttl: int) -> None:
        self.sessions = sessions
        self.code_ttl = timedelta(seconds=code_ttl)

    def issue_code(
        self,
        *,
        client_id: str,
        session: BrowserSession,
        redirect_uri: str,
        scope: str,
        nonce: str | None,
        code_challenge: str | None,
        code_challenge_method: str | None,
        now: datetime,
        resource: str | None = None,
    ) -> str:
        """Store a new code for the signed-in user and return it; the caller commits."""
        raw = new_secret()
        db.session.add(
            AuthorizationCode(
                code_hash=digest(raw),
                client_id=client_id,
                user_id=session.user_id,
                browser_session_id=session.id,
                redirect_uri=redirect_uri,
                scope=scope,
                nonce=nonce,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                resource=resource,
                auth_time=session.auth_time,
                created_at=now,
                expires_at=now + self.code_ttl,
            )
        )
        db.session.flush()
        after_commit(
            audit.record,
            "authorization.code_issued",
            "success",
            user_id=session.user.public_id,
            client_id=client_id,
            scope=scope,
        )
        return raw

    def find_code(self, raw: str, client_id: str, now: datetime) -> StoredCode:
        """Return the live code a client presents; a spent one revokes what it minted.

        An unknown code, one issued to another client and an expired one are refused alike.
        """
        if not isinstance(raw, str) or not raw or len(raw) > CODE_MAX:
            raise InvalidAuthorizationCode()
        # The code, its user and its browser session in one query, the user's and the browser
        # session's rows locked (FOR SHARE) until the redemption commits: a sign-out, password
        # reset or disable that writes either row waits for it, and then its revocation sees
        # the session this redemption opens (or, if it came first, this read sees it).
        params = {"code_hash": digest(raw)}
        found = db.session.execute(_FIND_LIVE_CODE, params).one_or_none()
        if found is None:
            # Unknown, or its browser session is gone: read it without the browser session.
            found = db.session.execute(_FIND_CODE, params).one_or_none()
        if found is None or found.client_id != client_id:
            audit.record(
                "authorization.code_refused", "failure", client_id=client_id, reason="unknown"
            )
            raise InvalidAuthorizationCode()
        code = StoredCode(**found._asdict())
        if code.used_at is not None:
            self._revoke_what_it_minted(code, code.user.public_id, now)
            raise InvalidAuthorizationCode()
        if code.expires_at <= now:
            audit.record(
                "authorization.code_refused", "failure", client_id=client_id, reason="expired"
            )
            raise InvalidAuthorizationCode()
        return code

    def redeem(
        self,
        code: StoredCode,
        now: datetime,
        audience: str | list[str] | None = None,
    ) -> Redemption:
        """Spend a code (of two racing redemptions exactly one wins) and mint its tokens.

        `audience` is the `aud` of the tokens (None: the server's own)."""
        user = code.user
        valid_after = user.sessions_valid_after
        if (
            code.browser_session_public_id is None
            or code.browser_session_ended_at is not None
            or not user.is_active
            or user.disabled_at is not None
            or (valid_after is not None and code.auth_time < valid_after)
        ):
            # Signed out (or disabled, or reset) between the code and its redemption.
            user_public_id = user.public_id
            self._spend(code, now, None)
            db.session.commit()  # the code stays spent
            audit.record(
                "authorization.code_refused",
                "failure",
                client_id=code.client_id,
                user_id=user_public_id,
                reason="session_ended",
            )
            raise InvalidAuthorizationCode()
        refreshable = OFFLINE_ACCESS in code.scope.split()
        pair = self.sessions.start(
            user,
            code.client_id,
            code.scope,
            now,
            browser_session_id=code.browser_session_id,
            refreshable=refreshable,
            audience=audience,
        )
        # Spent after the session it opened exists, so that the code names it: a replay then
        # revokes that session. Of two racing redemptions the second finds the code spent
        # here and rolls its own session back.
        self._spend(code, now, pair.session_id)
        after_commit(
            audit.record,
            "authorization.code_redeemed",
            "success",
            user_id=user.public_id,
            client_id=code.client_id,
            session_id=pair.session_id,
        )
        return Redemption(pair, user, code.nonce, code.auth_time, code.browser_session_public_id)

    def _spend(self, code: StoredCode, now: datetime, session_public_id: str | None) -> None:
        """Mark the code used (and name the session it opened); refuse it if already used."""
        spent = db.session.execute(
            _SPEND_CODE, {"code_id": code.id, "now": now, "session_public_id": session_public_id}
        ).rowcount
        if spent != 1:
            # Another redemption spent it since it was read: this one is a second use, as a
            # replay is, and ends what the first one got (committed by now: PostgreSQL held
            # this UPDATE until the winner's transaction ended). Only on PostgreSQL: SQLite
            # runs the two one after the other, and the second finds the code spent.
            user_public_id = code.user.public_id  # the rollback expires the loaded user
            db.session.rollback()
            still = db.session.execute(_MINTED_BY_CODE, {"code_id": code.id}).one_or_none()
            if still is None:
                # Deleted meanwhile: the user withdrew the client's consent.
                audit.record(
                    "authorization.code_refused",
                    "failure",
                    client_id=code.client_id,
                    user_id=user_public_id,
                    reason="unknown",
                )
                raise InvalidAuthorizationCode()
            self._revoke_what_it_minted(
                replace(code, refresh_session_id=still.refresh_session_id), user_public_id, now
            )
            raise InvalidAuthorizationCode()

    def _revoke_what_it_minted(self, code: StoredCode, user_public_id: str, now: datetime) -> None:
        session_id = None
        if code.refresh_session_id is not None:
            session = db.session.get(RefreshSession, code.refresh_session_id)
            if session is not None:
                session_id = session.public_id
                if session.revoked_at is None:
                    session.revoked_at = now
                    session.revoked_reason = CODE_REUSED
        # Committed here: the request fails, and the revocation must stay.
        db.session.commit()
        if session_id is not None:
            self.sessions.revocations.sessions_revoked([session_id])
        audit.record(
            "authorization.code_reused",
            "denied",
            client_id=code.client_id,
            user_id=user_public_id,
            session_id=session_id,
        )

    # Consent -------------------------------------------------------------------------------

    def consented(self, user: User, client_id: str, scope: str, since: datetime | None) -> bool:
        """Whether the user approved every scope asked (after `since`, when given)."""
        consent = self._consent(user, client_id)
        if consent is None or not set(scope.split()) <= set(consent.scope.split()):
            return False
        return since is None or consent.granted_at >= since

    def grant_consent(self, user: User, client_id: str, scope: str, now: datetime) -> None:
        """Remember that the user approved these scopes for the client; the caller commits."""
        consent = self._consent(user, client_id)
        if consent is None:
            consent = Consent(user_id=user.id, client_id=client_id, scope="", granted_at=now)
            db.session.add(consent)
        merged = dict.fromkeys([*consent.scope.split(), *scope.split()])
        consent.scope = " ".join(merged)
        consent.granted_at = now
        db.session.flush()
        after_commit(
            audit.record,
            "consent.granted",
            "success",
            user_id=user.public_id,
            client_id=client_id,
            scope=scope,
        )

    def list_consents(self, user_id: int) -> list[tuple[Consent, str]]:
        """Return a user's remembered approvals with each client's name, oldest first."""
        rows = db.session.execute(
            select(Consent, OAuthClient.name)
            .join(OAuthClient, OAuthClient.client_id == Consent.client_id)
            .where(Consent.user_id == user_id, OAuthClient.deleted_at.is_(None))
            .order_by(Consent.id)
        )
        return [(consent, name) for consent, name in rows]

    def withdraw_consent(self, user: Any, client_id: str, now: datetime) -> None:
        """Forget an approval and end the client's sessions (and so its tokens) for the user."""
        consent = self._consent(user, client_id) if len(client_id) <= CLIENT_ID_MAX else None
        if consent is None:
            raise NotFound("You have not approved an application with this client_id.")
        db.session.delete(consent)
        # The codes not yet redeemed go too (a redemption racing this either spent its code
        # first, and this waits for it and then ends its session below, or finds it gone).
        db.session.execute(
            delete(AuthorizationCode)
            .where(
                AuthorizationCode.user_id == user.id,
                AuthorizationCode.client_id == client_id,
                AuthorizationCode.used_at.is_(None),
            )
            .execution_options(synchronize_session=False)
        )
        self.sessions.revoke_matching(
            "consent_withdrawn",
            now,
            RefreshSession.user_id == user.id,
            RefreshSession.client_id == client_id,
        )
        db.session.flush()
        after_commit(
            audit.record,
            "consent.withdrawn",
            "success",
            user_id=user.public_id,
            client_id=client_id,
        )

    def _consent(self, user: Any, client_id: str) -> Consent | None:
        return db.session.scalar(
            select(Consent).where(Consent.user_id == user.id, Consent.client_id == client_id)
        )


# The code exchange's statements, built once (see idp.services.sessions). The code, its user (an
# ORM object: the ID token's claims are read from it) and its browser session in one query; the
# columns are named as StoredCode's fields.
_codes = AuthorizationCode.__table__
_browsers = BrowserSession.__table__
_owner = aliased(User, name="user")
_CODE_COLUMNS = (
    _codes.c.id,
    _codes.c.client_id,
    _codes.c.redirect_uri,
    _codes.c.scope,
    _codes.c.nonce,
    _codes.c.code_challenge,
    _codes.c.code_challenge_method,
    _codes.c.resource,
    _codes.c.auth_time,
    _codes.c.expires_at,
    _codes.c.used_at,
    _codes.c.refresh_session_id,
    _codes.c.browser_session_id,
    _browsers.c.public_id.label("browser_session_public_id"),
    _browsers.c.ended_at.label("browser_session_ended_at"),
    _owner,
)


def _code_by_hash(*, live: bool) -> Select:
    """The code and its user, with its browser session: `live`, only a code whose browser
    session exists, the user's and the browser session's rows locked FOR SHARE (PostgreSQL;
    SQLite's BEGIN IMMEDIATE already runs the writers one at a time). They are locked in this
    order, users first: a writer that must hold both takes them in the same order (a login, an
    admin's disable), or the two could deadlock."""
    query = (
        select(*_CODE_COLUMNS)
        .select_from(_codes)
        .join(_owner, _owner.id == _codes.c.user_id)
        .join(_browsers, _browsers.c.id == _codes.c.browser_session_id, isouter=not live)
        .where(_codes.c.code_hash == bindparam("code_hash"))
    )
    return query.with_for_update(read=True, of=[_owner, _browsers]) if live else query


_FIND_LIVE_CODE = _code_by_hash(live=True)
_FIND_CODE = _code_by_hash(live=False)
_MINTED_BY_CODE = select(_codes.c.refresh_session_id).where(_codes.c.id == bindparam("code_id"))
_SPEND_CODE = (
    update(_codes)
    .where(_codes.c.id == bindparam("code_id"), _codes.c.used_at.is_(None))
    .values(
        used_at=bindparam("now"),
        refresh_session_id=select(RefreshSession.__table__.c.id)
        .where(RefreshSession.__table__.c.public_id == bindparam("session_public_id"))
        .scalar_subquery(),
    )
)
