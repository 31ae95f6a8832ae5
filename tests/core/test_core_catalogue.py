"""The model catalogue: which names resolve, to which Bedrock id, at which price."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.catalogue import CATALOGUE, PROFILE_PREFIXES, Catalogue, ModelEntry, Prices, geo_for_region


def prices(inp: str, out: str, cache_read: str = "0", cache_write: str = "0") -> Prices:
    return Prices(Decimal(inp), Decimal(out), Decimal(cache_read), Decimal(cache_write))


HAIKU_3 = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET_3_5_V2 = "anthropic.claude-3-5-sonnet-20241022-v2:0"
SONNET_3_7 = "anthropic.claude-3-7-sonnet-20250219-v1:0"
SONNET_4 = "anthropic.claude-sonnet-4-20250514-v1:0"
SONNET_4_5 = "anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU_4_5 = "anthropic.claude-haiku-4-5-20251001-v1:0"
OPUS_4_5 = "anthropic.claude-opus-4-5-20251101-v1:0"
OPUS_4_6 = "anthropic.claude-opus-4-6-v1"
SONNET_4_6 = "anthropic.claude-sonnet-4-6"

SONNET_4_5_BASE = prices("3", "15", "0.3", "3.75")
SONNET_4_5_GEO = prices("3.3", "16.5", "0.33", "4.125")  # +10% (client-protocols.md: us. is 3.3/16.5)
HAIKU_4_5_GEO = prices("1.1", "5.5", "0.11", "1.375")
OPUS_4_5_BASE = prices("5", "25", "0.5", "6.25")
OPUS_4_5_GEO = prices("5.5", "27.5", "0.55", "6.875")

RESOLVE_CASES = [
    # --- catalogue short names -------------------------------------------------------------
    pytest.param(
        "claude-3-haiku", "us-east-1", "claude-3-haiku", HAIKU_3, prices("0.25", "1.25"), id="short-haiku"
    ),
    pytest.param(
        "claude-3-haiku",
        "eu-west-1",
        "claude-3-haiku",
        HAIKU_3,
        prices("0.25", "1.25"),
        id="short-on-demand-model-ignores-region",
    ),
    pytest.param(
        "nova-pro",
        "us-east-1",
        "nova-pro",
        "amazon.nova-pro-v1:0",
        prices("0.8", "3.2", "0.2", "0.8"),
        id="short-nova-pro",
    ),
    pytest.param(
        "amazon-nova-lite",
        "us-east-1",
        "nova-lite",
        "amazon.nova-lite-v1:0",
        prices("0.06", "0.24", "0.015", "0.06"),
        id="alias-nova-lite",
    ),
    pytest.param(
        "mistral-large-2407",
        "us-west-2",
        "mistral-large",
        "mistral.mistral-large-2407-v1:0",
        prices("2", "6"),
        id="alias-mistral",
    ),
    pytest.param(
        "llama3-8b",
        "us-east-1",
        "llama3-8b",
        "meta.llama3-8b-instruct-v1:0",
        prices("0.30", "0.60"),
        id="short-llama3-8b",
    ),
    # --- Anthropic API names: dated, undated, -latest --------------------------------------
    pytest.param(
        "claude-3-haiku-20240307",
        "us-east-1",
        "claude-3-haiku",
        HAIKU_3,
        prices("0.25", "1.25"),
        id="anthropic-dated-haiku-3",
    ),
    pytest.param(
        "claude-3-5-haiku-latest",
        "us-east-1",
        "claude-3-5-haiku",
        "anthropic.claude-3-5-haiku-20241022-v1:0",
        prices("0.8", "4", "0.08", "1"),
        id="anthropic-latest-3-5-haiku",
    ),
    pytest.param(
        "claude-3-opus-latest",
        "us-east-1",
        "claude-3-opus",
        "anthropic.claude-3-opus-20240229-v1:0",
        prices("15", "75", "1.5", "18.75"),
        id="anthropic-latest-3-opus",
    ),
    pytest.param(
        "claude-3-5-sonnet-latest",
        "us-east-1",
        "claude-3-5-sonnet",
        "us." + SONNET_3_5_V2,
        prices("3", "15", "0.3", "3.75"),
        id="anthropic-latest-profile-only-gets-us",
    ),
    pytest.param(
        "claude-3-5-sonnet-20241022",
        "ap-southeast-1",
        "claude-3-5-sonnet",
        "apac." + SONNET_3_5_V2,
        prices("3", "15", "0.3", "3.75"),
        id="anthropic-dated-profile-only-gets-apac",
    ),
    pytest.param(
        "claude-3-7-sonnet-latest",
        "eu-west-1",
        "claude-3-7-sonnet",
        "eu." + SONNET_3_7,
        prices("3", "15", "0.3", "3.75"),
        id="anthropic-latest-3-7-eu",
    ),
    pytest.param(
        "claude-sonnet-4-0",
        "us-west-2",
        "claude-sonnet-4",
        "us." + SONNET_4,
        prices("3", "15", "0.3", "3.75"),
        id="anthropic-undated-sonnet-4-0",
    ),
    pytest.param(
        "claude-sonnet-4-20250514",
        "eu-central-1",
        "claude-sonnet-4",
        "eu." + SONNET_4,
        prices("3", "15", "0.3", "3.75"),
        id="anthropic-dated-sonnet-4-no-premium",
    ),
    pytest.param(
        "claude-opus-4-1-20250805",
        "us-east-1",
        "claude-opus-4-1",
        "us.anthropic.claude-opus-4-1-20250805-v1:0",
        prices("15", "75", "1.5", "18.75"),
        id="anthropic-dated-opus-4-1",
    ),
    # --- geo premium (Sonnet 4.5 onward) on the region's geo profile -----------------------
    pytest.param(
        "claude-sonnet-4-5",
        "us-east-1",
        "claude-sonnet-4-5",
        "us." + SONNET_4_5,
        SONNET_4_5_GEO,
        id="sonnet-4-5-us-premium",
    ),
    pytest.param(
        "claude-sonnet-4-5-20250929",
        "eu-west-3",
        "claude-sonnet-4-5",
        "eu." + SONNET_4_5,
        SONNET_4_5_GEO,
        id="sonnet-4-5-dated-eu-premium",
    ),
    pytest.param(
        "claude-haiku-4-5",
        "ap-northeast-1",
        "claude-haiku-4-5",
        "jp." + HAIKU_4_5,
        HAIKU_4_5_GEO,
        id="haiku-4-5-tokyo-jp-premium",
    ),
    pytest.param(
        "claude-haiku-4-5-20251001",
        "ap-southeast-2",
        "claude-haiku-4-5",
        "au." + HAIKU_4_5,
        HAIKU_4_5_GEO,
        id="haiku-4-5-sydney-au-premium",
    ),
    pytest.param(
        "claude-opus-4-5",
        "ap-south-1",
        "claude-opus-4-5",
        "apac." + OPUS_4_5,
        OPUS_4_5_GEO,
        id="opus-4-5-mumbai-apac-premium",
    ),
    pytest.param(
        "claude-sonnet-4-6",
        "sa-east-1",
        "claude-sonnet-4-6",
        "us." + SONNET_4_6,
        SONNET_4_5_GEO,
        id="sonnet-4-6-unknown-geo-defaults-us",
    ),
    # --- region's geo not offered: global if offered, else the first profile ---------------
    pytest.param(
        "claude-haiku-4-5",
        "us-gov-west-1",
        "claude-haiku-4-5",
        "global." + HAIKU_4_5,
        prices("1", "5", "0.1", "1.25"),
        id="haiku-4-5-no-gov-profile-falls-back-to-global-no-premium",
    ),
    pytest.param(
        "claude-sonnet-4",
        "ap-northeast-1",
        "claude-sonnet-4",
        "global." + SONNET_4,
        prices("3", "15", "0.3", "3.75"),
        id="sonnet-4-jp-not-offered-global",
    ),
    pytest.param(
        "claude-3-7-sonnet",
        "ap-northeast-1",
        "claude-3-7-sonnet",
        "us." + SONNET_3_7,
        prices("3", "15", "0.3", "3.75"),
        id="no-global-first-profile",
    ),
    pytest.param(
        "llama3-1-70b",
        "eu-west-1",
        "llama3-1-70b",
        "us.meta.llama3-1-70b-instruct-v1:0",
        prices("0.72", "0.72"),
        id="us-only-profile-from-eu",
    ),
    pytest.param(
        "deepseek-r1",
        "us-east-2",
        "deepseek-r1",
        "us.deepseek.r1-v1:0",
        prices("1.35", "5.40"),
        id="deepseek-profile-only",
    ),
    # --- bare Bedrock ids: sent as given, base price ---------------------------------------
    pytest.param(HAIKU_3, "us-east-1", "claude-3-haiku", HAIKU_3, prices("0.25", "1.25"), id="bare-id"),
    pytest.param(
        SONNET_4_5,
        "us-east-1",
        "claude-sonnet-4-5",
        SONNET_4_5,
        SONNET_4_5_BASE,
        id="bare-id-of-profile-only-model-kept",
    ),
    pytest.param(OPUS_4_6, "eu-west-1", "claude-opus-4-6", OPUS_4_6, OPUS_4_5_BASE, id="bare-undated-id"),
    pytest.param(
        "amazon.titan-embed-text-v2:0",
        "us-east-1",
        "titan-embed-text-v2",
        "amazon.titan-embed-text-v2:0",
        prices("0.02", "0"),
        id="bare-embedding-id",
    ),
    # --- inference-profile ids: sent as given; premium only on geo profiles ----------------
    pytest.param(
        "us." + HAIKU_3,
        "eu-west-1",
        "claude-3-haiku",
        "us." + HAIKU_3,
        prices("0.25", "1.25"),
        id="profile-us-old-model-no-premium",
    ),
    pytest.param(
        "eu." + SONNET_4_5,
        "us-east-1",
        "claude-sonnet-4-5",
        "eu." + SONNET_4_5,
        SONNET_4_5_GEO,
        id="profile-eu-sonnet-4-5-premium",
    ),
    pytest.param(
        "global." + SONNET_4_5,
        "us-east-1",
        "claude-sonnet-4-5",
        "global." + SONNET_4_5,
        SONNET_4_5_BASE,
        id="profile-global-sonnet-4-5-no-premium",
    ),
    pytest.param(
        "us." + SONNET_4_5,
        "us-east-1",
        "claude-sonnet-4-5",
        "us." + SONNET_4_5,
        SONNET_4_5_GEO,
        id="profile-us-sonnet-4-5-premium",
    ),
    pytest.param(
        "us-gov." + SONNET_4_5,
        "us-gov-west-1",
        "claude-sonnet-4-5",
        "us-gov." + SONNET_4_5,
        SONNET_4_5_GEO,
        id="profile-us-gov-premium",
    ),
    pytest.param(
        "global." + OPUS_4_6,
        "us-east-1",
        "claude-opus-4-6",
        "global." + OPUS_4_6,
        OPUS_4_5_BASE,
        id="profile-global-opus-4-6",
    ),
    pytest.param(
        "jp." + HAIKU_4_5,
        "ap-northeast-1",
        "claude-haiku-4-5",
        "jp." + HAIKU_4_5,
        HAIKU_4_5_GEO,
        id="profile-jp-haiku-4-5-premium",
    ),
    pytest.param(
        "apac." + SONNET_3_5_V2,
        "ap-south-1",
        "claude-3-5-sonnet",
        "apac." + SONNET_3_5_V2,
        prices("3", "15", "0.3", "3.75"),
        id="profile-apac-pre-4-5-no-premium",
    ),
    pytest.param(
        "global." + SONNET_4,
        "us-east-1",
        "claude-sonnet-4",
        "global." + SONNET_4,
        prices("3", "15", "0.3", "3.75"),
        id="profile-global-sonnet-4",
    ),
    pytest.param(
        "us.amazon.nova-pro-v1:0",
        "us-east-1",
        "nova-pro",
        "us.amazon.nova-pro-v1:0",
        prices("0.8", "3.2", "0.2", "0.8"),
        id="profile-us-nova",
    ),
]


@pytest.mark.parametrize(("name", "region", "entry_name", "bedrock_id", "expected_prices"), RESOLVE_CASES)
def test_resolve(name: str, region: str, entry_name: str, bedrock_id: str, expected_prices: Prices) -> None:
    resolved = CATALOGUE.resolve(name, region)
    assert resolved is not None
    assert resolved.entry.name == entry_name
    assert resolved.bedrock_id == bedrock_id
    assert resolved.prices == expected_prices


UNKNOWN_NAMES = [
    pytest.param("gpt-4o", id="other-vendor"),
    pytest.param("", id="empty"),
    pytest.param("Claude-3-Haiku", id="wrong-case"),
    pytest.param("claude-3-haiku-latest", id="latest-alias-that-does-not-exist"),
    pytest.param("claude-sonnet-4-5-latest", id="invented-latest"),
    pytest.param("claude-opus-9-9", id="future-model"),
    pytest.param(" claude-3-haiku", id="leading-space"),
    pytest.param("anthropic.claude-3-haiku-20240307-v1", id="bare-id-without-version-suffix"),
    pytest.param("anthropic.claude-3-haiku-20240307-v1:0 ", id="bare-id-trailing-space"),
    pytest.param("us.claude-3-haiku", id="profile-prefix-on-short-name"),
    pytest.param("xx.anthropic.claude-3-haiku-20240307-v1:0", id="unknown-profile-prefix"),
    pytest.param("us.us.anthropic.claude-3-haiku-20240307-v1:0", id="double-profile-prefix"),
    pytest.param("global.", id="bare-profile-prefix"),
    pytest.param("anthropic.claude-v2:1", id="uncatalogued-bedrock-id"),
    pytest.param(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        id="profile-arn",
    ),
]


@pytest.mark.parametrize("name", UNKNOWN_NAMES)
def test_unknown_names_resolve_to_none(name: str) -> None:
    assert CATALOGUE.resolve(name) is None


@pytest.mark.parametrize(
    ("region", "geo"),
    [
        pytest.param("us-east-1", "us", id="us-east-1"),
        pytest.param("us-west-2", "us", id="us-west-2"),
        pytest.param("ca-central-1", "us", id="canada"),
        pytest.param("us-gov-west-1", "us-gov", id="govcloud-west"),
        pytest.param("us-gov-east-1", "us-gov", id="govcloud-east"),
        pytest.param("eu-west-1", "eu", id="ireland"),
        pytest.param("eu-central-2", "eu", id="zurich"),
        pytest.param("eu-north-1", "eu", id="stockholm"),
        pytest.param("ap-northeast-1", "jp", id="tokyo"),
        pytest.param("ap-northeast-3", "apac", id="osaka-is-apac"),
        pytest.param("ap-northeast-2", "apac", id="seoul"),
        pytest.param("ap-southeast-1", "apac", id="singapore"),
        pytest.param("ap-southeast-2", "au", id="sydney"),
        pytest.param("ap-southeast-4", "au", id="melbourne"),
        pytest.param("ap-south-1", "apac", id="mumbai"),
        pytest.param("sa-east-1", "us", id="sao-paulo-default"),
        pytest.param("me-central-1", "us", id="uae-default"),
    ],
)
def test_geo_for_region(region: str, geo: str) -> None:
    assert geo_for_region(region) == geo


def test_every_profile_only_default_route_is_a_profile_id() -> None:
    for entry in CATALOGUE.entries:
        if not entry.profile_only:
            continue
        assert entry.profiles, entry.name
        for region in (
            "us-east-1",
            "eu-west-1",
            "ap-northeast-1",
            "ap-southeast-2",
            "ap-south-1",
            "sa-east-1",
        ):
            resolved = CATALOGUE.resolve(entry.name, region)
            assert resolved is not None
            prefix, _, rest = resolved.bedrock_id.partition(".")
            assert prefix in entry.profiles, (entry.name, region, resolved.bedrock_id)
            assert rest == entry.base_id


def test_geo_premium_is_ten_percent_on_every_geo_profile_and_never_on_global() -> None:
    premium_entries = [e for e in CATALOGUE.entries if e.geo_premium]
    assert {e.name for e in premium_entries} >= {"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-5"}
    for entry in CATALOGUE.entries:
        for prefix in entry.profiles:
            assert prefix in PROFILE_PREFIXES
            resolved = CATALOGUE.resolve(f"{prefix}.{entry.base_id}")
            assert resolved is not None
            factor = Decimal("1.1") if entry.geo_premium and prefix != "global" else Decimal(1)
            assert resolved.prices == entry.prices.scaled(factor), (entry.name, prefix)


def test_sonnet_4_5_in_govcloud_uses_the_us_gov_profile() -> None:
    resolved = CATALOGUE.resolve("claude-sonnet-4-5", "us-gov-west-1")
    assert resolved is not None
    assert resolved.bedrock_id == "us-gov." + SONNET_4_5
    assert resolved.prices == SONNET_4_5_GEO


def test_names_aliases_and_base_ids_are_unique() -> None:
    names = [n for e in CATALOGUE.entries for n in (e.name, *e.aliases)]
    assert len(names) == len(set(names))
    base_ids = [e.base_id for e in CATALOGUE.entries]
    assert len(base_ids) == len(set(base_ids))
    assert not set(names) & set(base_ids)


def test_catalogue_refuses_a_name_listed_twice() -> None:
    one = ModelEntry("a", "vendor.a-v1:0", "vendor", prices("1", "1"))
    two = ModelEntry("b", "vendor.b-v1:0", "vendor", prices("1", "1"), aliases=("a",))
    with pytest.raises(ValueError, match="'a' is listed twice"):
        Catalogue([one, two])


def test_geo_premium_entries_offer_global_and_prices_are_non_negative() -> None:
    for entry in CATALOGUE.entries:
        if entry.geo_premium:
            assert "global" in entry.profiles, entry.name
        for value in (
            entry.prices.input,
            entry.prices.output,
            entry.prices.cache_read,
            entry.prices.cache_write,
        ):
            assert isinstance(value, Decimal)
            assert value >= 0


def test_chat_models_exclude_embeddings() -> None:
    chat = {e.name for e in CATALOGUE.chat_models()}
    assert "claude-3-haiku" in chat
    assert not chat & {"titan-embed-text-v2", "cohere-embed-english-v3", "cohere-embed-multilingual-v3"}
    assert all(e.kind == "chat" for e in CATALOGUE.chat_models())


def test_prices_scaled_is_exact() -> None:
    assert prices("3", "15", "0.3", "3.75").scaled(Decimal("1.1")) == SONNET_4_5_GEO
    assert str(prices("0.035", "0.14").scaled(Decimal("1.1")).input) == "0.0385"
