"""Logs never carry note text or secrets, not even inside a traceback."""

from __future__ import annotations

import io
import json
import logging

import pytest
from pydantic import ValidationError

from icdcoder.shared.errors import loggable
from icdcoder.shared.logging import WITHHELD, PublicError, configure_logging, get_logger, scrub
from icdcoder.shared.messages import NoteIn

NOTE = "A 54-year-old man with renal colic and haematuria after a long flight"
PASSWORD = "s3cret-redis-pw"


def _emit(fn: object) -> list[dict[str, object]]:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out)
    try:
        fn()  # type: ignore[operator]
    finally:
        logging.getLogger().handlers.clear()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _fail_with_locals() -> None:
    note_text = NOTE  # noqa: F841 - a local the traceback must not show
    auth_args = ("default", PASSWORD)  # noqa: F841
    raise KeyError(NOTE)


def test_tracebacks_show_neither_locals_nor_messages_that_may_quote_input() -> None:
    def run() -> None:
        try:
            _fail_with_locals()
        except KeyError:
            get_logger("t").exception("boom")

    (line,) = _emit(run)
    rendered = json.dumps(line)
    assert NOTE not in rendered and PASSWORD not in rendered
    (stack,) = line["exception"]  # type: ignore[misc]
    assert stack["exc_type"] == "KeyError" and stack["exc_value"] == WITHHELD
    assert any(frame["name"] == "_fail_with_locals" for frame in stack["frames"])
    assert all("locals" not in frame for frame in stack["frames"])


def test_standard_library_records_go_through_the_same_processors() -> None:
    def run() -> None:
        try:
            raise ConnectionError(f"redis://:{PASSWORD}@db:6379 refused")
        except ConnectionError:
            logging.getLogger("some.library").error("fetch failed", exc_info=True)

    (line,) = _emit(run)
    rendered = json.dumps(line)
    assert PASSWORD not in rendered and "redis://***@db:6379" in rendered
    assert line["logger"] == "some.library" and line["level"] == "error"


def test_validation_errors_are_summarised_without_their_input() -> None:
    with pytest.raises(ValidationError) as info:
        NoteIn.model_validate({"note_id": "has spaces", "text": NOTE})
    said = loggable(info.value)
    assert "note_id" in said and "string_pattern_mismatch" in said
    assert "has spaces" not in said and NOTE not in said


def test_public_errors_keep_their_message_and_others_their_type_only() -> None:
    assert loggable(PublicError("the note is empty")) == "PublicError: the note is empty"
    assert loggable(ValueError(NOTE)) == "ValueError"
    assert loggable(OSError(f"redis://:{PASSWORD}@h")) == "OSError: redis://***@h"


def test_scrub_removes_credentials() -> None:
    assert scrub(f"rediss://user:{PASSWORD}@h:1/0") == "rediss://***@h:1/0"
    assert scrub(f"password={PASSWORD} x") == "password=*** x"
