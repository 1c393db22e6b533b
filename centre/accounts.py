"""Web accounts: staff (roles ``viewer``, ``operator``, ``exporter``) and one contact per school; their sessions.

Passwords are hashed with argon2-cffi (Argon2id, its default parameters). A session is a random 256-bit token
in a cookie; the database keeps only its SHA-256 (like kit tokens), with the CSRF token of that session and an
expiry, so a logout or an expiry holds for every centre process. Students have no account.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, delete, select, update

from .db import schools, users, utcnow, web_sessions
from .errors import CentreError

ROLES = ("viewer", "operator", "exporter")
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
MIN_PASSWORD = 10
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anybody")  # verified against for unknown names: the same time spent


@dataclass(frozen=True)
class User:
    id: int
    username: str
    display_name: str
    kind: str  # staff | school
    roles: frozenset[str]
    school_id: int | None
    school_code: str | None

    @property
    def is_staff(self) -> bool:
        return self.kind == "staff"

    def can(self, role: str) -> bool:
        return self.is_staff and role in self.roles


def _roles(text: str) -> frozenset[str]:
    return frozenset(r for r in text.split(",") if r)


def parse_roles(text: str) -> list[str]:
    roles = sorted({r.strip() for r in text.split(",") if r.strip()})
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise CentreError(f"roles: one or more of {', '.join(ROLES)} (got {text!r})")
    return roles


def add_user(engine: Engine, username: str, password: str, *, kind: str, roles: list[str] | None = None,
             school: str | None = None, display_name: str = "") -> User:
    """Create a staff account (``roles``) or a school's contact account (``school``: its code)."""
    if not USERNAME.match(username):
        raise CentreError(f"user name {username!r}: 2–64 letters, digits, '_', '.', '@' or '-'")
    if len(password) < MIN_PASSWORD:
        raise CentreError(f"password: at least {MIN_PASSWORD} characters")
    if kind not in ("staff", "school"):
        raise CentreError(f"kind: staff or school, not {kind!r}")
    with engine.begin() as conn:
        if conn.execute(select(users.c.id).where(users.c.username == username)).first():
            raise CentreError(f"user {username} already exists")
        school_id = None
        if kind == "school":
            school_id = conn.execute(select(schools.c.id).where(schools.c.code == (school or ""))).scalar()
            if school_id is None:
                raise CentreError(f"no school {school!r} (capturekit centre school add CODE --name ...)")
            if conn.execute(select(users.c.username).where(users.c.school_id == school_id)).first():
                raise CentreError(f"school {school} already has a contact account (one per school)")
            roles = []
        elif not roles:
            raise CentreError(f"a staff account needs roles: {', '.join(ROLES)}")
        uid = conn.execute(users.insert().values(
            username=username, password_hash=_hasher.hash(password), display_name=display_name or username,
            kind=kind, roles=",".join(roles or []), school_id=school_id, active=True,
            created_at=utcnow())).inserted_primary_key[0]
        return user_by_id(conn, uid)  # type: ignore[return-value]


def set_password(engine: Engine, username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise CentreError(f"password: at least {MIN_PASSWORD} characters")
    with engine.begin() as conn:
        n = conn.execute(update(users).where(users.c.username == username)
                         .values(password_hash=_hasher.hash(password))).rowcount
        conn.execute(delete(web_sessions).where(web_sessions.c.user_id.in_(
            select(users.c.id).where(users.c.username == username))))
    if not n:
        raise CentreError(f"no user {username}")


def set_active(engine: Engine, username: str, active: bool) -> None:
    with engine.begin() as conn:
        n = conn.execute(update(users).where(users.c.username == username).values(active=active)).rowcount
        if not active:
            conn.execute(delete(web_sessions).where(web_sessions.c.user_id.in_(
                select(users.c.id).where(users.c.username == username))))
    if not n:
        raise CentreError(f"no user {username}")


def _select_user():
    return (select(users.c.id, users.c.username, users.c.display_name, users.c.kind, users.c.roles,
                   users.c.school_id, schools.c.code, users.c.active)
            .outerjoin(schools, schools.c.id == users.c.school_id))


def _user(row) -> User:
    return User(row.id, row.username, row.display_name, row.kind, _roles(row.roles), row.school_id, row.code)


def user_by_id(conn: Connection, user_id: int) -> User | None:
    row = conn.execute(_select_user().where(users.c.id == user_id)).first()
    return _user(row) if row else None


def list_users(engine: Engine) -> list[tuple[User, bool]]:
    with engine.connect() as conn:
        return [(_user(r), bool(r.active)) for r in conn.execute(_select_user().order_by(users.c.username))]


def check_password(engine: Engine, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (the same work is done for an unknown name)."""
    with engine.connect() as conn:
        row = conn.execute(select(users.c.id, users.c.password_hash, users.c.active)
                           .where(users.c.username == username)).first()
    try:
        _hasher.verify(row.password_hash if row else _DUMMY, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or not row.active:
        return None
    with engine.begin() as conn:
        if _hasher.check_needs_rehash(row.password_hash):
            conn.execute(update(users).where(users.c.id == row.id).values(password_hash=_hasher.hash(password)))
        conn.execute(update(users).where(users.c.id == row.id).values(last_login_at=utcnow()))
        return user_by_id(conn, row.id)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_session(engine: Engine, user: User, hours: float) -> tuple[str, str]:
    """(cookie token, CSRF token) of a new session; expired sessions are swept on the way."""
    token, csrf, now = secrets.token_urlsafe(32), secrets.token_urlsafe(32), utcnow()
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
        conn.execute(web_sessions.insert().values(id=_token_hash(token), user_id=user.id, csrf=csrf, created_at=now,
                                                  expires_at=now + dt.timedelta(hours=hours)))
    return token, csrf


def session_user(engine: Engine, token: str | None) -> tuple[User, str] | None:
    """(user, CSRF token) of a live session, or None (unknown, expired, or the account was disabled)."""
    if not token or len(token) > 100:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(web_sessions.c.user_id, web_sessions.c.csrf, web_sessions.c.expires_at,
                                  users.c.active)
                           .join(users, users.c.id == web_sessions.c.user_id)
                           .where(web_sessions.c.id == _token_hash(token))).first()
        if row is None or row.expires_at < utcnow() or not row.active:
            return None
        user = user_by_id(conn, row.user_id)
    return (user, row.csrf) if user else None


def end_session(engine: Engine, token: str | None) -> None:
    if token:
        with engine.begin() as conn:
            conn.execute(delete(web_sessions).where(web_sessions.c.id == _token_hash(token)))
