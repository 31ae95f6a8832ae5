"""Admins' changes to the catalogue (`ModelOverride`) and its database copy (`catalogue_store`)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg
import pytest

from core.catalogue import CATALOGUE, ModelEntry, ModelOverride, Prices, base_model_id
from core.catalogue_store import CatalogueFollower, CatalogueState, load_catalogue_state, override_from_row


def test_price_override_keeps_everything_else() -> None:
    catalogue = CATALOGUE.with_overrides([ModelOverride("nova-pro", price_input=Decimal("0.5"))])
    entry = catalogue.entry("amazon-nova-pro")
    assert entry is not None and entry.prices == Prices(
        Decimal("0.5"), Decimal("3.2"), Decimal("0.2"), Decimal("0.8")
    )
    builtin = CATALOGUE.entry("nova-pro")
    assert (
        builtin is not None
        and entry.aliases == builtin.aliases
        and entry.capabilities == builtin.capabilities
    )
    resolved = catalogue.resolve("us.amazon.nova-pro-v1:0")
    assert resolved is not None and resolved.prices.input == Decimal("0.5")
    # The built-in catalogue itself is untouched.
    original = CATALOGUE.resolve("nova-pro")
    assert original is not None and original.prices.input == Decimal("0.8")


def test_added_model_resolves_by_name_alias_and_profile() -> None:
    added = ModelOverride(
        "nova-premier",
        base_id="amazon.nova-premier-v1:0",
        provider="amazon",
        price_input=Decimal("2.5"),
        price_output=Decimal("12.5"),
        aliases=("amazon-nova-premier",),
        profiles=("us",),
        profile_only=True,
    )
    catalogue = CATALOGUE.with_overrides([added])
    resolved = catalogue.resolve("amazon-nova-premier", "us-west-2")
    assert resolved is not None and resolved.bedrock_id == "us.amazon.nova-premier-v1:0"
    assert len(catalogue.entries) == len(CATALOGUE.entries) + 1


def test_disabled_model_still_resolves_for_pricing() -> None:
    catalogue = CATALOGUE.with_overrides([ModelOverride("nova-micro", enabled=False)])
    resolved = catalogue.resolve("amazon.nova-micro-v1:0")
    assert resolved is not None and resolved.entry.enabled is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        pytest.param(ModelOverride("x"), "needs base_id, provider, price_input", id="incomplete"),
        pytest.param(ModelOverride("nova-pro", price_output=Decimal(-1)), "non-negative", id="negative"),
        pytest.param(ModelOverride("nova-pro", price_output=Decimal("NaN")), "non-negative", id="nan"),
        pytest.param(ModelOverride("nova-pro", aliases=("nova-lite",)), "listed twice", id="name-clash"),
        pytest.param(ModelOverride("nova-pro", base_id="amazon.nova-lite-v1:0"), "listed twice",
                     id="id-clash"),
        pytest.param(ModelOverride("nova-pro", base_id="nova"), "Bedrock model id", id="bad-base-id"),
        pytest.param(ModelOverride("nova-pro", kind="audio"), "kind", id="kind"),
        pytest.param(ModelOverride("deepseek-r1", profiles=()), "profile-only", id="no-profiles"),
        pytest.param(ModelOverride("nova-pro", context_window=0), "context_window", id="context-window"),
        pytest.param(ModelOverride(" x ", base_id="a.b", provider="p", price_input=Decimal(1),
                                   price_output=Decimal(1)), "name", id="spaces-in-name"),
    ],
)  # fmt: skip
def test_invalid_overrides_are_refused(override: ModelOverride, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CATALOGUE.with_overrides([override])


@pytest.mark.parametrize(
    ("model_id", "base"),
    [
        ("us.anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-haiku-20240307-v1:0"),
        ("us-gov.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("anthropic.claude-opus-4-8", "anthropic.claude-opus-4-8"),
        ("deepseek.r1-v1:0", "deepseek.r1-v1:0"),
    ],
)
def test_base_model_id(model_id: str, base: str) -> None:
    assert base_model_id(model_id) == base


def test_state_allowlists() -> None:
    haiku, nova = CATALOGUE.entry("claude-3-haiku"), CATALOGUE.entry("nova-pro")
    assert haiku is not None and nova is not None
    state = CatalogueState(CATALOGUE, {7: frozenset({"claude-3-haiku"})})
    assert state.allows(7, haiku) and not state.allows(7, nova) and state.allows(8, nova)
    assert [e.name for e in state.allowed_models(7)] == ["claude-3-haiku"]
    disabled = CatalogueState(CATALOGUE.with_overrides([ModelOverride("nova-pro", enabled=False)]))
    assert "nova-pro" not in [e.name for e in disabled.allowed_models(1)]


def test_override_from_row_reads_arrays_and_numerics() -> None:
    override = override_from_row(
        {
            "name": "m",
            "aliases": ["a"],
            "capabilities": ["tools"],
            "price_input": Decimal("1.5"),
            "enabled": None,
        }
    )
    assert override.aliases == ("a",) and override.capabilities == frozenset({"tools"})
    assert override.price_input == Decimal("1.5") and override.enabled is None and override.profiles is None


async def test_follower_loads_and_follows_changes(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    follower = CatalogueFollower(database_url, resync_interval_s=60)
    try:
        await connection.execute("TRUNCATE model_overrides, key_model_access")
        await connection.execute("INSERT INTO model_overrides (name, price_input) VALUES ('nova-pro', 0.5)")
        await follower.start()
        resolved = follower.catalogue.resolve("nova-pro")
        assert resolved is not None and resolved.prices.input == Decimal("0.5")
        key_id = await connection.fetchval(
            "INSERT INTO api_keys (name, key_hash, key_prefix, fee_month)"
            " VALUES ('k', '\\x01', 'br-x', now()) RETURNING id"
        )
        async with connection.transaction():
            await connection.execute("UPDATE model_overrides SET price_input = 0.25 WHERE name = 'nova-pro'")
            await connection.execute(
                "INSERT INTO key_model_access (key_id, models) VALUES ($1, ARRAY['nova-pro'])", key_id
            )
        for _ in range(100):  # a notification reaches the follower within a second
            resolved = follower.catalogue.resolve("nova-pro")
            if (
                resolved is not None
                and resolved.prices.input == Decimal("0.25")
                and follower.state.allowlists
            ):
                break
            await asyncio.sleep(0.01)
        assert resolved is not None and resolved.prices.input == Decimal("0.25")
        assert follower.state.allowlists == {key_id: frozenset({"nova-pro"})}
        # A hand-edited invalid row is ignored: the last good catalogue stays.
        await connection.execute("INSERT INTO model_overrides (name, price_input) VALUES ('made-up', 1)")
        await asyncio.sleep(0.3)
        assert (
            follower.catalogue.entry("nova-pro") is not None and follower.catalogue.entry("made-up") is None
        )
        with pytest.raises(ValueError, match="made-up"):
            await load_catalogue_state(connection)
    finally:
        await follower.close()
        await connection.execute("TRUNCATE model_overrides, key_model_access")
        await connection.close()


async def test_follower_without_a_database_serves_the_builtin_catalogue() -> None:
    follower = CatalogueFollower(None)
    await follower.start()
    assert follower.catalogue is CATALOGUE
    await follower.close()


def test_entries_keep_their_builtin_defaults() -> None:
    entry = ModelEntry("m", "v.m", "v", Prices(Decimal(1), Decimal(1)))
    assert entry.enabled is True and entry.betas == frozenset()
