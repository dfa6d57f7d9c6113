"""API keys: random tokens shown once, kept only as SHA-256 hashes.

Keys come from the settings (``ICDCODER_API__KEYS``: ``name:sha256hex`` pairs, for keys kept
in a secret manager) and from the store's ``api_keys`` table (``icdcoder api-key create``).
A key is 32 random bytes, so a plain SHA-256 is the right hash: there is nothing to guess
(password hashes are for low-entropy secrets). Comparison is in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from icdcoder.shared.logging import PublicError
from icdcoder.shared.store.repository import Store
from icdcoder.shared.store.schema import ApiKey, utcnow

PREFIX = "icd_"


class ApiKeyError(PublicError):
    """A malformed key list in the settings."""


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_keys(raw: str) -> dict[str, str]:
    """``name:hash,name:hash`` -> {hash: name}."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        name, sep, digest = item.partition(":")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ApiKeyError("ICDCODER_API__KEYS: each key is name:<64 hex digits of its SHA-256>")
        keys[digest] = name
    return keys


@dataclass
class KeyRing:
    """The hashes of every valid key, by name: the settings' and the store's, the store's read
    again at most every ``refresh_s`` when an unknown key is presented (so a key created or
    revoked while the server runs takes effect)."""

    configured: Mapping[str, str]
    store: Store | None = None
    refresh_s: float = 30.0

    def __post_init__(self) -> None:
        self._stored: dict[str, str] = {}
        self._read_at = float("-inf")
        self._reload()

    def _reload(self) -> None:
        if self.store is not None:
            self._stored = stored_keys(self.store)
        self._read_at = time.monotonic()

    @property
    def empty(self) -> bool:
        return not self.configured and not self._stored

    def who(self, presented: str | None) -> str | None:
        """The name of the key presented, or None when it is no valid key."""
        if not presented:
            return None
        digest = key_hash(presented)
        name = self._match(digest)
        if name is None and time.monotonic() - self._read_at > self.refresh_s:
            self._reload()
            name = self._match(digest)
        return name

    def _match(self, digest: str) -> str | None:
        found = None
        for hashes in (self.configured, self._stored):
            for known, name in hashes.items():
                if hmac.compare_digest(known, digest):
                    found = name
        return found


def key_ring(settings_keys: str, store: Store | None) -> KeyRing:
    return KeyRing(parse_keys(settings_keys), store)


def stored_keys(store: Store) -> dict[str, str]:
    with store.session() as session:
        rows = session.execute(
            select(ApiKey.key_hash, ApiKey.name).where(ApiKey.revoked_at.is_(None))
        )
        return {digest: name for digest, name in rows}


def create_key(store: Store, name: str) -> str:
    """A new key named ``name``, its hash stored; the key itself is returned once."""
    key = new_key()
    try:
        with store.session() as session, session.begin():
            session.add(ApiKey(name=name, key_hash=key_hash(key)))
    except IntegrityError:
        raise ApiKeyError(
            f"a key named {name!r} exists: revoke it or choose another name"
        ) from None
    return key


def revoke_key(store: Store, name: str) -> bool:
    with store.session() as session, session.begin():
        row = session.scalars(select(ApiKey).where(ApiKey.name == name)).one_or_none()
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        return True


def names(store: Store) -> Iterable[tuple[str, bool]]:
    with store.session() as session:
        for name, revoked in session.execute(select(ApiKey.name, ApiKey.revoked_at)):
            yield name, revoked is None
