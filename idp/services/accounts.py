"""Accounts: registration, email verification, login checks and password reset."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from idp import audit
from idp.errors import (
    EmailAlreadyRegistered,
    EmailNotVerified,
    ValidationFailed,
)
from idp.extensions import db
from idp.models import User
from idp.services import one_time_tokens as ott
from idp.services.addresses import canonical_email
from idp.services.background import BackgroundJobs
from idp.services.login_walls import LoginWalls
from idp.services.mail import ACCOUNT_EXISTS, PASSWORD_RESET_MAIL, VERIFY_EMAIL_MAIL
from idp.services.outbox import MailCapped, Outbox, Resolution
from idp.services.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordService,
    normalized,
    password_policy_errors,
)
from idp.services.sessions import API_SCOPE, PASSWORD_RESET, SessionService, TokenPair
from idp.transaction import after_commit


class AccountService:
    """Every rule about a user's account and its mails."""

    def __init__(
        self,
        passwords: PasswordService,
        outbox: Outbox,
        sessions: SessionService,
        jobs: BackgroundJobs,
        walls: LoginWalls,
        *,
        api_client_id: str,
        registration_privacy: bool,
    ) -> None:
        self.passwords = passwords
        self.outbox = outbox
        outbox.resolvers[VERIFY_EMAIL_MAIL] = self._verification_mail
        outbox.resolvers[PASSWORD_RESET_MAIL] = self._password_reset_mail
        outbox.resolvers[ACCOUNT_EXISTS] = self._account_exists_mail
        self.sessions = sessions
        self.jobs = jobs
        self.walls = walls
        self.api_client_id = api_client_id
        self.registration_privacy = registration_privacy

    def find_by_email(self, email: str) -> User | None:
        """Return the account for an address in any case or spelling, if there is one."""
        return db.session.scalar(_USER_BY_EMAIL, {"email_canonical": canonical_email(email)})

    def register(
        self,
        *,
        email: str,
        password: str,
        first_name: str,
        last_name: str,
        company_name: str | None,
        now: datetime,
    ) -> str:
        """Create an inactive account, mail its verification link, return its public id.

        With registration privacy on, a taken address gets the same answer (a fresh, unused id)
        and its owner a mail saying so, instead of the 409 that would reveal the account.
        """
        problems = password_policy_errors(password, email)
        if problems:
            raise ValidationFailed(errors={"password": problems})
        # Hash before touching the database so no transaction is held open during the work.
        password_hash = self.passwords.hash(password)
        user = User(
            public_id=str(uuid.uuid4()),
            email=email,
            email_canonical=canonical_email(email),
            password_hash=password_hash,
            first_name=first_name,
            last_name=last_name,
            company_name=company_name,
            is_active=False,
            created_at=now,
            updated_at=now,
        )
        db.session.add(user)
        link_mail = self._link_mail(user, VERIFY_EMAIL_MAIL, now)
        try:
            # The mail is committed with the account and its tokens, or none of them is. The
            # unique index decides races at this flush: of two concurrent sign-ups one gets in.
            mail = self.outbox.enqueue(
                VERIFY_EMAIL_MAIL,
                link_mail.to,
                link_mail.context,
                now,
                expires_at=link_mail.expires_at,
                tokens=link_mail.tokens,
            )
        except IntegrityError as exc:
            db.session.rollback()
            audit.record("user.register", "failure", reason="email_exists", email=email)
            if not self.registration_privacy:
                raise EmailAlreadyRegistered() from exc
            self._request_mail(ACCOUNT_EXISTS, email, now)
            return str(uuid.uuid4())
        after_commit(audit.record, "user.register", "success", user_id=user.public_id)
        after_commit(self.jobs.submit, self.outbox.process, mail.id)
        return user.public_id

    def _request_mail(self, message: str, address: str, now: datetime) -> None:
        """Stage a mail request for an address as typed; it is resolved after the answer."""
        mail = self.outbox.request(message, address, now)
        after_commit(self.jobs.submit, self.outbox.process, mail.id)

    def _link_mail(self, user: User, message: str, now: datetime) -> Resolution:
        """Issue the tokens a verification or reset mail links to, and return that mail.

        The tokens are staged in the session; the caller commits them with the mail's row. No
        mail carries the account's name: it is whatever the registrant typed, and neither a
        verified address nor a reset proves that the mailbox's owner chose it, so greeting with
        it would let anyone put their text into a genuine mail to somebody else.
        """
        if message == VERIFY_EMAIL_MAIL:
            verify = ott.issue_one_time_token(user, ott.VERIFY_EMAIL, now)
            # "Not you?": someone may have registered this address with a password of their
            # own (pre-account hijacking). A reset link beside the verification link lets the
            # mailbox's owner replace that password in one step; see confirm_password_reset.
            reset = ott.issue_one_time_token(user, ott.PASSWORD_RESET, now)
            context = {"token": verify.raw, "reset_token": reset.raw}
            tokens = (verify.row, reset.row)
        else:
            reset = ott.issue_one_time_token(user, ott.PASSWORD_RESET, now)
            context = {"token": reset.raw}
            tokens = (reset.row,)
        # The mail is worth sending as long as its first link lives.
        return Resolution(user.email, context, tokens[0].expires_at, tokens)

    def _verification_mail(self, address: str, now: datetime) -> Resolution | None:
        user = self.find_by_email(address)
        if user is None or user.email_verified_at is not None:
            return None
        self.outbox.admit(VERIFY_EMAIL_MAIL, user.email_canonical)
        return self._link_mail(user, VERIFY_EMAIL_MAIL, now)

    def _password_reset_mail(self, address: str, now: datetime) -> Resolution | None:
        user = self.find_by_email(address)
        if user is None:
            audit.record(
                "password_reset.requested", "failure", reason="unknown_account", email=address
            )
            return None
        try:
            self.outbox.admit(PASSWORD_RESET_MAIL, user.email_canonical)
        except MailCapped:
            audit.record(
                "password_reset.requested", "denied", user_id=user.public_id, reason="throttled"
            )
            raise
        # The resolver's transaction (the outbox commits it) issues the link, or nothing does.
        after_commit(audit.record, "password_reset.requested", "success", user_id=user.public_id)
        return self._link_mail(user, PASSWORD_RESET_MAIL, now)

    def _account_exists_mail(self, address: str, now: datetime) -> Resolution | None:
        owner = self.find_by_email(address)
        if owner is None:
            return None
        self.outbox.admit(ACCOUNT_EXISTS, owner.email_canonical)
        return Resolution(owner.email, {})

    def verify_email(self, raw_token: str, now: datetime) -> User:
        """Spend a verification token and activate its account."""
        user_id = ott.consume_one_time_token(raw_token, ott.VERIFY_EMAIL, now)
        user = db.session.get(User, user_id)
        assert user is not None  # the foreign key guarantees it
        if user.email_verified_at is None:
            user.email_verified_at = now
            user.is_active = user.disabled_at is None  # an admin's disable outlives the link
        db.session.flush()
        after_commit(audit.record, "user.verify_email", "success", user_id=user.public_id)
        return user

    def verification_link_is_live(self, raw_token: str, now: datetime) -> bool:
        """Whether a mailed verification link still works (nothing is spent)."""
        return ott.is_live(raw_token, ott.VERIFY_EMAIL, now)

    def reset_link_is_live(self, raw_token: str, now: datetime) -> bool:
        """Whether a mailed reset link still works (nothing is spent)."""
        return ott.is_live(raw_token, ott.PASSWORD_RESET, now)

    def resend_verification(self, email: str, now: datetime) -> None:
        """Mail a new verification link if the address belongs to an unverified account.

        Only the request is written now; the look-up happens after the answer, so the answer
        costs the same for every address.
        """
        self._request_mail(VERIFY_EMAIL_MAIL, email, now)

    def authenticate(
        self,
        email: str,
        password: str,
        now: datetime,
        source: str | None = None,
        site: str | None = None,
    ) -> User:
        """Check a login; unknown email and wrong password fail alike and cost the same.

        `source` and `site` say where the client is, for the failed-login walls (see
        idp.services.login_walls).
        """
        attempt = self.walls.attempt(canonical_email(email), email, source, site)
        attempt.refuse_if_source_is_over()
        fail = attempt.fail

        # Measured as the policy measures it, normalised: a decomposed password that registered
        # can be longer as typed. No stored password can be longer than this.
        if len(normalized(password)) > MAX_PASSWORD_LENGTH:
            fail("password_too_long")
        user = self.find_by_email(email)
        stored_hash = user.password_hash if user is not None else None
        # Read before the commit: a reload afterwards would cost a query only known users pay.
        public_id = user.public_id if user is not None else None
        # End the read transaction before the deliberately slow hash.
        db.session.commit()
        checked = self.passwords.check(stored_hash, password)
        if not checked.matched or user is None:
            fail("unknown_account" if user is None else "bad_password", public_id)
        if user.disabled_at is not None:
            # Answered as a wrong password is, so the password's holder learns nothing more.
            fail("disabled", public_id, outcome="denied")
        # Only someone who knows the password learns that the address is unverified.
        if user.email_verified_at is None or not user.is_active:
            if self.registration_privacy:
                # Registration answers 201 for a taken address too, and its owner gets a mail.
                # A 403 here would tell the registrant that their sign-up made the account (it
                # knows that password) while a taken address answers 401: so this answers as a
                # wrong password does, counted on the walls (or the 429 under attack would
                # tell the two apart).
                fail("unverified", public_id, outcome="denied")
            audit.record(
                "login.failure", "denied", user_id=public_id, reason="unverified", email=email
            )
            raise EmailNotVerified()
        new_hash = self.passwords.hash(password) if checked.rehash else None
        # The password may have changed while it was checked (a reset in another request). The
        # login stands only if the checked hash is still the stored one; this UPDATE holds the
        # user's row until the session is committed, so a reset that commits after it ends that
        # session, and one that committed before it makes the login fail here.
        # An admin's disable is held off the same way: one committed during the hash (the row
        # read above does not show it) fails the login here, a later one waits for this row and
        # then ends the session.
        still_current = db.session.execute(
            _RECORD_LOGIN if new_hash is None else _RECORD_LOGIN_AND_REHASH,
            {"user_id": user.id, "checked_hash": stored_hash, "now": now, "new_hash": new_hash},
        ).rowcount
        if still_current != 1:
            db.session.rollback()
            # Only a login that lost a race pays the query that tells the two refusals apart.
            if db.session.scalar(select(User.disabled_at).where(User.id == user.id)) is not None:
                fail("disabled", public_id, outcome="denied")
            fail("password_changed", public_id)
        # A Core UPDATE leaves the loaded user as it was: say what the row now holds.
        set_committed_value(user, "last_login_at", now)
        if new_hash is not None:
            set_committed_value(user, "password_hash", new_hash)
        return user

    def login(
        self,
        email: str,
        password: str,
        now: datetime,
        source: str | None = None,
        site: str | None = None,
    ) -> TokenPair:
        """Check a login and open a session for the /api/v1/auth client."""
        user = self.authenticate(email, password, now, source, site)
        pair = self.sessions.start(user, self.api_client_id, API_SCOPE, now)
        after_commit(
            audit.record,
            "login.success",
            "success",
            user_id=pair.user.public_id,
            session_id=pair.session_id,
            client_id=self.api_client_id,
        )
        return pair

    def refresh(self, raw_refresh_token: str, now: datetime) -> TokenPair:
        """Rotate a refresh token of a session the /api/v1/auth client opened.

        The API acts as its own public client: a refresh token another client was issued is
        refused here as at /oauth/token (and, being reuse from the wrong client, revokes nothing).
        """
        return self.sessions.rotate(raw_refresh_token, self.api_client_id, now)

    def request_password_reset(self, email: str, now: datetime) -> None:
        """Mail a reset link if the address has an account; say nothing either way.

        Only the request is written now; the look-up happens after the answer, so the answer
        costs the same for every address.
        """
        self._request_mail(PASSWORD_RESET_MAIL, email, now)

    def confirm_password_reset(self, raw_token: str, new_password: str, now: datetime) -> User:
        """Set a new password with a reset token and end every session of the user."""
        problems = password_policy_errors(new_password)
        if problems:
            raise ValidationFailed(errors={"new_password": problems})
        password_hash = self.passwords.hash(new_password)
        user_id = ott.consume_one_time_token(raw_token, ott.PASSWORD_RESET, now)
        user = db.session.get(User, user_id)
        assert user is not None
        problems = password_policy_errors(new_password, user.email)
        if problems:
            # Only now do we know the address; keep the link usable for a better password.
            db.session.rollback()
            raise ValidationFailed(errors={"new_password": problems})
        user.password_hash = password_hash
        user.sessions_valid_after = now
        if user.email_verified_at is None:
            # The link came to the mailbox, as a verification link does: it proves the address.
            user.email_verified_at = now
            user.is_active = user.disabled_at is None
        ended = self.sessions.revoke_all_for_user(user, PASSWORD_RESET, now)
        db.session.flush()
        revocations = self.sessions.revocations
        after_commit(revocations.sessions_revoked, ended)
        after_commit(revocations.user_sessions_ended, user.public_id, now)
        after_commit(audit.record, "password_reset.confirmed", "success", user_id=user.public_id)
        return user


# Login's statements, built once (see idp.services.sessions).
_users = User.__table__
_USER_BY_EMAIL = select(User).where(User.email_canonical == bindparam("email_canonical"))
_RECORD_LOGIN = (
    update(_users)
    .where(
        _users.c.id == bindparam("user_id"),
        _users.c.password_hash == bindparam("checked_hash"),
        _users.c.disabled_at.is_(None),
    )
    .values(last_login_at=bindparam("now"))
)
_RECORD_LOGIN_AND_REHASH = _RECORD_LOGIN.values(password_hash=bindparam("new_hash"))
