"""Checking a Redis URL before a client is built from it, with errors that never echo it."""

from __future__ import annotations

from urllib.parse import urlsplit

SCHEMES = ("redis", "rediss", "unix")


def check_redis_url(url: str) -> None:
    """Raise ``ValueError`` saying what is wrong with ``url`` (never repeating it: it may hold a
    password)."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError("the Redis URL's port is not a number from 0 to 65535") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            "the Redis URL must start with redis://, rediss:// (TLS) or unix:// "
            f"(it starts with {parts.scheme + '://' if parts.scheme else 'no scheme'})"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("the Redis URL names no host (redis://host:port/db)")
    path = parts.path.strip("/")
    if parts.scheme != "unix" and path and not path.isdigit():
        raise ValueError("the Redis URL's database must be a number (redis://host:port/0)")
    del port
