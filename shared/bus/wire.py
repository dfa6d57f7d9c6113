"""The wire format of a stream entry: one message as JSON in the field FastStream reads.

An entry is ``{"__data__": <JSON>}``, so any Redis client can read it. Between stages a large
message (over :data:`COMPRESS_OVER` bytes: a long note's candidates run to megabytes of
repetitive JSON) is stored zlib-compressed instead (JSON never starts with the zlib header
byte ``x``); the results on the codes stream are always plain JSON. What a stage receives
can be anything a producer wrote, so nothing here trusts it: :func:`entry_bytes` returns the
bytes as they were, :func:`payload_of` tells text from bytes that are not UTF-8, and
:func:`guess_note_id` reads an id without parsing the JSON (a payload of 100,000 nested arrays
exhausts Python's recursion limit in any JSON parser).
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal

from faststream.redis.parser import BinaryMessageFormatV1
from pydantic import BaseModel
from redis.typing import EncodableT, FieldT

from icdcoder.shared.messages import NOTE_ID_PATTERN

#: The stream-entry field that holds a message: FastStream's name, plain JSON as the value.
PAYLOAD_FIELD = "__data__"
#: How far into a payload :func:`guess_note_id` looks.
ID_WINDOW = 4096
#: Stage-to-stage messages longer than this are stored compressed.
COMPRESS_OVER = 64 * 1024
#: A compressed message may not inflate past this (a zip bomb is refused, not expanded).
MAX_INFLATED = 256 * 2**20
_ZLIB = b"x"


class PayloadError(ValueError):
    """A compressed payload that is corrupt or inflates past :data:`MAX_INFLATED`."""


def pack_payload(text: str) -> str | bytes:
    """What a stage stores: the JSON, compressed when it is long."""
    if len(text) <= COMPRESS_OVER:
        return text
    return zlib.compress(text.encode(), 1)


def unpack_payload(raw: bytes) -> bytes:
    """The JSON bytes of a stored payload (inflated when it was compressed)."""
    if not raw.startswith(_ZLIB):
        return raw
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, MAX_INFLATED)
    except zlib.error:
        raise PayloadError("neither JSON nor a valid compressed payload") from None
    if inflater.unconsumed_tail or not inflater.eof:
        raise PayloadError(f"compressed payload inflates past {MAX_INFLATED:,} bytes")
    return data


_NOTE_ID_RE = re.compile(NOTE_ID_PATTERN)
_ID_FIELD_RE = re.compile(rb'"note_id"\s*:\s*"([^"\\]{1,200})"')


def encode_entry(payload: BaseModel | str) -> dict[FieldT, EncodableT]:
    """The stream entry for one message: its JSON under :data:`PAYLOAD_FIELD`."""
    text = payload if isinstance(payload, str) else payload.model_dump_json()
    return {PAYLOAD_FIELD: text}


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def entry_bytes(fields: Mapping[bytes, bytes] | Mapping[str, str]) -> bytes:
    """The message bytes of an entry as stored (every field as JSON when it is not ours);
    :func:`unpack_payload` inflates a compressed one."""
    for key, value in fields.items():
        if _bytes(key) == PAYLOAD_FIELD.encode():
            raw = _bytes(value)
            if raw.startswith(BinaryMessageFormatV1.IDENTITY_HEADER):  # FastStream's own format
                raw = BinaryMessageFormatV1.parse(raw)[0]
            return raw
    return json.dumps(
        {
            _bytes(k).decode("utf-8", "replace"): _bytes(v).decode("utf-8", "replace")
            for k, v in fields.items()
        },
        ensure_ascii=False,
    ).encode()


@dataclass(frozen=True)
class Payload:
    """A payload as a dead letter keeps it: its text, or base64 when it is not UTF-8."""

    text: str
    encoding: Literal["utf-8", "base64"]

    @property
    def is_text(self) -> bool:
        return self.encoding == "utf-8"


def payload_of(raw: bytes) -> Payload:
    try:
        return Payload(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        return Payload(base64.b64encode(raw).decode("ascii"), "base64")


def guess_note_id(raw: bytes | str) -> str | None:
    """The note id of a payload that may be malformed, when one can be read; never raises."""
    match = _ID_FIELD_RE.search(_bytes(raw)[:ID_WINDOW])
    if match is None:
        return None
    try:
        note_id = match.group(1).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return note_id if _NOTE_ID_RE.match(note_id) else None


async def inflate(msg: Any, original: Callable[[Any], Awaitable[Any]]) -> Any:
    """FastStream parser: inflate a compressed payload before the default parsing. A corrupt
    one is left as it is: decoding fails and it is dead-lettered with the reason."""
    data = msg.get("data") if isinstance(msg, dict) else None
    if isinstance(data, dict):
        raw = data.get(PAYLOAD_FIELD.encode())
        if isinstance(raw, bytes):
            with suppress(PayloadError):
                data[PAYLOAD_FIELD.encode()] = unpack_payload(raw)
    return await original(msg)
