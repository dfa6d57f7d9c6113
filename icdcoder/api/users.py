"""Reviewers: a name and a password, kept as an argon2id hash (``icdcoder user create``).

Passwords are low-entropy secrets, so they get a slow, salted hash (argon2-cffi's defaults,
RFC 9106's second recommended profile); a hash made with older parameters is upgraded at the
next login. A wrong name and a wrong password take the same time and give the same answer.
"""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from icdcoder.shared.logging import PublicError
from icdcoder.shared.store.repository import Store
from icdcoder.shared.store.schema import User, utcnow

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$")
MIN_PASSWORD = 8

_hasher = PasswordHasher()
#: Verified against when the name is unknown, so that both failures cost one argon2 run.
_DUMMY = _hasher.hash("not a password of anyone")


class UserError(PublicError):
    """A user that cannot be created (one line)."""


def check_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise UserError(
            "a user name is 1-100 letters, digits, '.', '_', '@' or '-', starting with a "
            "letter or digit"
        )
    return name


def create_user(store: Store, name: str, password: str) -> None:
    check_name(name)
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    try:
        with store.session() as session, session.begin():
            session.add(User(name=name, password_hash=_hasher.hash(password)))
    except IntegrityError:
        raise UserError(f"a user named {name!r} exists") from None


def set_password(store: Store, name: str, password: str) -> bool:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    with store.session() as session, session.begin():
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        if user is None:
            return False
        user.password_hash = _hasher.hash(password)
        user.disabled_at = None
        return True


def disable_user(store: Store, name: str) -> bool:
    with store.session() as session, session.begin():
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        if user is None or user.disabled_at is not None:
            return False
        user.disabled_at = utcnow()
        return True


def authenticate(store: Store, name: str, password: str) -> str | None:
    """The user's name when the password is theirs and the user is active, else None."""
    with store.session() as session, session.begin():
        user = session.scalars(select(User).where(User.name == name)).one_or_none()
        stored = user.password_hash if user is not None else _DUMMY
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or user.disabled_at is not None:
            return None
        if _hasher.check_needs_rehash(stored):
            user.password_hash = _hasher.hash(password)
        return user.name


def is_active(store: Store, name: str) -> bool:
    with store.session() as session:
        disabled = session.execute(select(User.disabled_at).where(User.name == name)).one_or_none()
        return disabled is not None and disabled[0] is None


def user_names(store: Store) -> list[tuple[str, bool]]:
    with store.session() as session:
        rows = session.execute(select(User.name, User.disabled_at).order_by(User.name))
        return [(name, disabled is None) for name, disabled in rows]
