"""The internal token's rules and check (core/internal_auth.py), and its setting."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from core.internal_auth import InternalToken, generate_token, log_refusal, token_problem
from core.settings import Settings, settings_problems

TOKEN = "0123456789abcdef0123456789abcdef-internal"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("0" * 64, id="hex"),
        pytest.param("q2Ysk9V+8x/Jm1fFQ0Z3pA6nR7tW2yE4uI5oP8aS0dG=", id="base64"),
        pytest.param(generate_token(), id="generated"),
        pytest.param("a" * 32, id="shortest"),
        pytest.param("a" * 512, id="longest"),
    ],
)
def test_usable_tokens(value: str) -> None:
    assert token_problem(value) is None
    assert InternalToken(value).refusal(value) is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        pytest.param("", "at least 32", id="empty"),
        pytest.param("a" * 31, "at least 32", id="short"),
        pytest.param("a" * 513, "at most 512", id="long"),
        pytest.param("a" * 40 + "%", "may only hold", id="percent (Envoy's formatter)"),
        pytest.param("a" * 40 + " b", "may only hold", id="space"),
        pytest.param("a" * 40 + "\r\nx-brproxy-key-id: 1", "may only hold", id="header-injection"),
        pytest.param("a" * 40 + "\x00", "may only hold", id="nul"),
        pytest.param("a" * 40 + "é", "may only hold", id="non-ascii"),
        pytest.param("CHANGE-ME (openssl rand -hex 32)", "may only hold", id="the-secret-example"),
    ],
)
def test_unusable_tokens_are_refused_without_being_quoted(value: str, problem: str) -> None:
    message = token_problem(value)
    assert message is not None and problem in message
    with pytest.raises(ValueError, match=problem) as refused:
        InternalToken(value)
    if value:
        assert value not in str(refused.value)
    with pytest.raises(ValidationError) as invalid:
        Settings(internal_token=value)  # "" means unset only in the environment
    lines = settings_problems(invalid.value)
    assert len(lines) == 1 and lines[0].startswith("BRPROXY_INTERNAL_TOKEN: ")
    assert problem in lines[0]
    if value:
        assert value not in lines[0]


def test_generated_tokens_are_new_each_time() -> None:
    assert len({generate_token() for _ in range(100)}) == 100


@pytest.mark.parametrize(
    ("presented", "reason"),
    [
        pytest.param(TOKEN, None, id="str"),
        pytest.param(TOKEN.encode(), None, id="bytes"),
        pytest.param(None, "no internal token", id="absent"),
        pytest.param("", "wrong internal token", id="empty"),
        pytest.param(TOKEN.upper(), "wrong internal token", id="other-case"),
        pytest.param(TOKEN[:-1], "wrong internal token", id="prefix"),
        pytest.param(TOKEN + "x", "wrong internal token", id="longer"),
        pytest.param(TOKEN + " ", "wrong internal token", id="trailing-space"),
        pytest.param(TOKEN.encode() + b"\x00", "wrong internal token", id="nul"),
        pytest.param("x" * 1_000_000, "wrong internal token", id="huge"),
        pytest.param("\ud800", "wrong internal token", id="lone-surrogate"),
        pytest.param(TOKEN.encode("utf-16"), "wrong internal token", id="other-encoding"),
    ],
)
def test_refusal(presented: str | bytes | None, reason: str | None) -> None:
    assert InternalToken(TOKEN).refusal(presented) == reason


def test_the_token_never_shows_in_a_repr() -> None:
    token = InternalToken(TOKEN)
    assert TOKEN not in repr(token) and TOKEN not in str(token)
    assert token.value == TOKEN  # what senders add
    assert TOKEN not in repr(Settings(internal_token=TOKEN))


def test_a_service_without_a_token_stops_with_a_clear_message() -> None:
    with pytest.raises(SystemExit, match="BRPROXY_INTERNAL_TOKEN is not set"):
        InternalToken.from_settings(Settings(internal_token=None))
    assert InternalToken.from_settings(Settings(internal_token=TOKEN)).refusal(TOKEN) is None


def test_the_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRPROXY_INTERNAL_TOKEN", TOKEN)
    setting = Settings().internal_token
    assert setting is not None and setting.get_secret_value() == TOKEN
    monkeypatch.setenv("BRPROXY_INTERNAL_TOKEN", "")  # as compose files write an unset value
    assert Settings().internal_token is None


def test_a_refusal_is_one_line_that_cannot_be_forged(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.internal_auth")
    with caplog.at_level(logging.WARNING, logger="test.internal_auth"):
        log_refusal(log, "wrong internal token", "POST", "/v1/x\nforged line", b"id\r\n" + b"y" * 500)
        log_refusal(log, "no internal token", "GET", "/events", None)
    first, second = (record.getMessage() for record in caplog.records)
    assert "\n" not in first and "\r" not in first
    assert first.startswith("refused POST '/v1/x\\nforged line': wrong internal token (request id 'id\\r\\n")
    assert len(first) < 250  # the id is cut short
    assert (
        second
        == "refused GET '/events': no internal token (request id -); only the edge may call this service"
    )
