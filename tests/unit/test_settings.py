"""The settings tree: read from nested environment variables, documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from icdcoder.commands.options import UsageError, settings_from_env
from icdcoder.shared.settings import Settings, settings_rows, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_table_is_the_settings_tree() -> None:
    text = README.read_text()
    table = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", text, re.S
    )
    assert table is not None, "README lacks the settings table markers"
    assert table.group(1) == settings_table(), "run `icdcoder settings` into the README"


def test_every_setting_says_what_it_does_and_variables_are_unique() -> None:
    rows = list(settings_rows())
    assert len(rows) > 30
    assert all(meaning for _, _, meaning in rows)
    names = [name for name, _, _ in rows]
    assert len(names) == len(set(names))
    assert "ICDCODER_BUS__REDIS_URL" in names and "ICDCODER_PACK" in names


def test_nested_variables_reach_their_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICDCODER_RETRIEVER__TOP_K", "33")
    monkeypatch.setenv("ICDCODER_VERIFIER__VLLM__MAX_RETRIES", "0")
    monkeypatch.setenv("ICDCODER_AGGREGATOR__COMBINE", "noisy_or")
    settings = Settings()
    assert settings.retriever.top_k == 33
    assert settings.verifier.vllm.max_retries == 0
    assert settings.aggregator.combine == "noisy_or"
    assert Settings.model_config.get("frozen")


def test_a_misspelt_or_invalid_variable_is_named_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ICDCODER_RETRIEVER__TOPK", "33")
    with pytest.raises(UsageError, match="ICDCODER_RETRIEVER__TOPK: Extra inputs"):
        settings_from_env()
    monkeypatch.delenv("ICDCODER_RETRIEVER__TOPK")
    monkeypatch.setenv("ICDCODER_RETRIEVER__TOP_K", "0")
    with pytest.raises(UsageError, match="ICDCODER_RETRIEVER__TOP_K: Input should be greater"):
        settings_from_env()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("foo://:pw-1@bar", "must start with redis://"),
        ("redis://:pw-1@host:port/0", "port is not a number"),
        ("redis://:pw-1@:6379/0", "names no host"),
        ("redis://:pw-1@host:6379/db", "database must be a number"),
    ],
)
def test_redis_urls_are_checked_without_repeating_them(
    monkeypatch: pytest.MonkeyPatch, url: str, problem: str
) -> None:
    monkeypatch.setenv("ICDCODER_BUS__REDIS_URL", url)
    with pytest.raises(UsageError) as info:
        settings_from_env()
    assert problem in str(info.value) and "pw-1" not in str(info.value)
    with pytest.raises(ValidationError):
        Settings()


def test_secrets_are_masked_in_the_effective_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICDCODER_BUS__REDIS_URL", "redis://:hunter2@h:6379/0")
    dumped = Settings().model_dump_json()
    assert "hunter2" not in dumped
