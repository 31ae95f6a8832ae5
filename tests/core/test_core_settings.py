"""The external database URL from the environment (DATABASE_URL or the original PGSQL_*)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from pydantic import ValidationError

from core.settings import Settings, database_url_from_env, settings_problems


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        pytest.param({}, None, id="nothing-means-embedded"),
        pytest.param(
            {"DATABASE_URL": "postgresql://u:p@db:5432/x"}, "postgresql://u:p@db:5432/x", id="database-url"
        ),
        pytest.param(
            {"BRPROXY_DATABASE_URL": "postgresql://a@one/x", "DATABASE_URL": "postgresql://b@two/y"},
            "postgresql://a@one/x",
            id="brproxy-database-url-wins",
        ),
        pytest.param(
            {"DATABASE_URL": "postgresql://db/x", "PGSQL_HOST": "other"},
            "postgresql://db/x",
            id="database-url-wins-over-pgsql",
        ),
        pytest.param(
            {"DATABASE_URL": "", "PGSQL_HOST": "pg"},
            "postgresql://postgres@pg:5432/brproxy",
            id="empty-database-url-ignored",
        ),
        pytest.param({"PGSQL_HOST": "pg"}, "postgresql://postgres@pg:5432/brproxy", id="pgsql-defaults"),
        pytest.param({"PGSQL_HOST": "", "PGSQL_USER": "u"}, None, id="pgsql-without-host"),
        pytest.param({"PGSQL_USER": "u", "PGSQL_PASSWORD": "p"}, None, id="pgsql-no-host-at-all"),
        pytest.param(
            {
                "PGSQL_HOST": "pg.internal",
                "PGSQL_PORT": "6543",
                "PGSQL_USER": "brp",
                "PGSQL_PASSWORD": "secret",
                "PGSQL_DATABASE": "bills",
            },
            "postgresql://brp:secret@pg.internal:6543/bills",
            id="pgsql-all",
        ),
        pytest.param(
            {"PGSQL_HOST": "pg", "PGSQL_PASSWORD": ""},
            "postgresql://postgres@pg:5432/brproxy",
            id="pgsql-empty-password-omitted",
        ),
        pytest.param(
            {
                "PGSQL_HOST": "pg",
                "PGSQL_USER": "ad min@corp",
                "PGSQL_PASSWORD": "p@ss:w/rd%#?&= ",
                "PGSQL_DATABASE": "my db/x",
            },
            "postgresql://ad%20min%40corp:p%40ss%3Aw%2Frd%25%23%3F%26%3D%20@pg:5432/my%20db%2Fx",
            id="pgsql-special-characters-quoted",
        ),
        pytest.param(
            {"PGSQL_HOST": "10.0.0.5", "PGSQL_PASSWORD": "pässwörd"},
            "postgresql://postgres:p%C3%A4ssw%C3%B6rd@10.0.0.5:5432/brproxy",
            id="pgsql-non-ascii",
        ),
    ],
)
def test_database_url_from_env(environ: dict[str, str], url: str | None) -> None:
    assert database_url_from_env(environ) == url


def test_quoted_parts_round_trip_through_a_url_parser() -> None:
    password = "p@ss:w/rd%#?&= "
    url = database_url_from_env({"PGSQL_HOST": "pg", "PGSQL_USER": "a@b", "PGSQL_PASSWORD": password})
    assert url is not None
    parts = urlsplit(url)
    assert parts.hostname == "pg"
    assert parts.port == 5432
    assert unquote(parts.username or "") == "a@b"
    assert unquote(parts.password or "") == password
    assert parts.path == "/brproxy"


def test_ipv6_pgsql_host_is_bracketed() -> None:
    url = database_url_from_env({"PGSQL_HOST": "::1", "PGSQL_PASSWORD": "p"})
    assert url is not None
    parts = urlsplit(url)
    assert parts.hostname == "::1"
    assert parts.port == 5432


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRPROXY_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGSQL_HOST", "from-env")
    assert database_url_from_env() == "postgresql://postgres@from-env:5432/brproxy"
    monkeypatch.setenv("DATABASE_URL", "postgresql://x/y")
    assert database_url_from_env() == "postgresql://x/y"


def test_settings_reads_either_database_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRPROXY_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://plain/x")
    assert Settings().database_url == "postgresql://plain/x"
    monkeypatch.setenv("BRPROXY_DATABASE_URL", "postgresql://prefixed/x")
    assert Settings().database_url == "postgresql://prefixed/x"


def test_require_database_url_falls_back_to_pgsql_then_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BRPROXY_DATABASE_URL", "DATABASE_URL", "PGSQL_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    with pytest.raises(SystemExit, match="no database configured"):
        settings.require_database_url()
    monkeypatch.setenv("PGSQL_HOST", "pg")
    assert settings.require_database_url() == "postgresql://postgres@pg:5432/brproxy"


def test_settings_problems_name_each_variable_and_never_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRPROXY_MAX_CONNECTIONS", "0")
    monkeypatch.setenv("BRPROXY_PORT", "secret-looking-value")
    monkeypatch.setenv("BRPROXY_PLAIN_HTTP", "maybe")
    with pytest.raises(ValidationError) as caught:
        Settings()
    problems = settings_problems(caught.value)
    assert [line.split(":", 1)[0] for line in problems] == [
        "BRPROXY_PORT",
        "BRPROXY_PLAIN_HTTP",
        "BRPROXY_MAX_CONNECTIONS",
    ]
    assert "greater than or equal to 1" in problems[2]
    assert not any("secret-looking-value" in line or "maybe" in line for line in problems)
