"""The model catalogue: names clients send → Bedrock model ids, capabilities and prices.

Prices are USD per million tokens (AWS's Bedrock on-demand list as gathered in
`shared/reference/client-protocols.md`), kept as exact decimals. A client may send:

- a catalogue name (`claude-3-haiku`, `claude-sonnet-4-5`, `nova-pro`),
- one of Anthropic's own API names, dated or undated (`claude-sonnet-4-5-20250929`,
  `claude-3-5-haiku-latest`),
- a full Bedrock model id or inference-profile id of a catalogued model
  (`anthropic.claude-3-haiku-20240307-v1:0`, `us.anthropic.claude-sonnet-4-5-20250929-v1:0`).

Anything else is unknown and must be refused (404 `model_not_found`), never replaced by
another model: an unknown id could not be priced, so it could not be billed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = [
    "CATALOGUE",
    "Catalogue",
    "ModelEntry",
    "Prices",
    "ResolvedModel",
    "geo_for_region",
]

PROFILE_PREFIXES = ("global", "us", "eu", "apac", "jp", "au", "us-gov")
_GEO_PREMIUM = Decimal("1.1")


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens."""

    input: Decimal
    output: Decimal
    cache_read: Decimal = Decimal(0)
    cache_write: Decimal = Decimal(0)

    def scaled(self, factor: Decimal) -> Prices:
        return Prices(
            self.input * factor,
            self.output * factor,
            self.cache_read * factor,
            self.cache_write * factor,
        )


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model as BRProxy offers it."""

    name: str
    """The short name listed by `/v1/models`."""
    base_id: str
    """Bedrock foundation-model id, without an inference-profile prefix."""
    provider: str
    prices: Prices
    aliases: tuple[str, ...] = ()
    """Other names clients send for it (Anthropic API ids, original BRProxy names)."""
    profiles: tuple[str, ...] = ()
    """Inference-profile prefixes Bedrock offers for it (`us`, `eu`, `global`, ...)."""
    profile_only: bool = False
    """Bedrock refuses on-demand calls with the bare id; a profile id must be sent."""
    geo_premium: bool = False
    """Geographic profiles cost 10% more than `global.` and in-region ids (Sonnet 4.5 onward)."""
    capabilities: frozenset[str] = field(default_factory=frozenset)
    """Subset of {"tools", "vision", "reasoning", "caching", "embeddings"}."""
    context_window: int = 200_000
    kind: str = "chat"
    """"chat" or "embedding"."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A client's model name resolved for one request."""

    entry: ModelEntry
    bedrock_id: str
    """The id to send to Bedrock (a profile id where one is required or was asked for)."""
    prices: Prices
    """Prices for this exact id (geo premium applied)."""


def geo_for_region(region: str) -> str:
    """The inference-profile geography that serves an AWS region."""
    if region.startswith("us-gov"):
        return "us-gov"
    if region.startswith(("us-", "ca-")):
        return "us"
    if region.startswith("eu-"):
        return "eu"
    if region == "ap-northeast-1":
        return "jp"
    if region.startswith("ap-southeast-2") or region.startswith("ap-southeast-4"):
        return "au"
    if region.startswith("ap-"):
        return "apac"
    return "us"


class Catalogue:
    """Name → model lookup over a fixed list of entries (pure; no I/O)."""

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self.entries: tuple[ModelEntry, ...] = tuple(entries)
        self._by_name: dict[str, ModelEntry] = {}
        self._by_base_id: dict[str, ModelEntry] = {}
        for entry in self.entries:
            for name in (entry.name, *entry.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name {name!r} is listed twice")
                self._by_name[name] = entry
            self._by_base_id[entry.base_id] = entry

    def resolve(self, name: str, region: str = "us-east-1") -> ResolvedModel | None:
        """The model a client's name stands for, or None if it is not in the catalogue."""
        entry = self._by_name.get(name)
        if entry is not None:
            return self._default_route(entry, region)
        entry = self._by_base_id.get(name)
        if entry is not None:
            # A bare Bedrock id is sent as given, even for profile-only models: the
            # client asked for that exact id and Bedrock's own error is the honest answer.
            return ResolvedModel(entry, name, entry.prices)
        prefix, dot, rest = name.partition(".")
        if dot and prefix in PROFILE_PREFIXES:
            entry = self._by_base_id.get(rest)
            if entry is not None:
                return ResolvedModel(entry, name, self._profile_prices(entry, prefix))
        return None

    def _default_route(self, entry: ModelEntry, region: str) -> ResolvedModel:
        if not entry.profile_only:
            return ResolvedModel(entry, entry.base_id, entry.prices)
        geo = geo_for_region(region)
        if geo not in entry.profiles:
            geo = "global" if "global" in entry.profiles else entry.profiles[0]
        return ResolvedModel(entry, f"{geo}.{entry.base_id}", self._profile_prices(entry, geo))

    @staticmethod
    def _profile_prices(entry: ModelEntry, geo: str) -> Prices:
        if entry.geo_premium and geo != "global":
            return entry.prices.scaled(_GEO_PREMIUM)
        return entry.prices

    def chat_models(self) -> list[ModelEntry]:
        return [e for e in self.entries if e.kind == "chat"]


def _p(inp: str, out: str, cache_read: str = "0", cache_write: str = "0") -> Prices:
    return Prices(Decimal(inp), Decimal(out), Decimal(cache_read), Decimal(cache_write))


_CLAUDE = frozenset({"tools", "vision", "caching"})
_CLAUDE_REASONING = _CLAUDE | {"reasoning"}
_US_EU_APAC = ("us", "eu", "apac")
_ALL_GEOS = ("global", "us", "eu", "apac", "jp", "au")


def _anthropic(
    name: str,
    base_id: str,
    prices: Prices,
    aliases: tuple[str, ...],
    profiles: tuple[str, ...],
    *,
    profile_only: bool = True,
    geo_premium: bool = False,
    capabilities: frozenset[str] = _CLAUDE_REASONING,
    context_window: int = 200_000,
) -> ModelEntry:
    return ModelEntry(
        name=name,
        base_id=base_id,
        provider="anthropic",
        prices=prices,
        aliases=aliases,
        profiles=profiles,
        profile_only=profile_only,
        geo_premium=geo_premium,
        capabilities=capabilities,
        context_window=context_window,
    )


CATALOGUE = Catalogue(
    [
        # --- Anthropic Claude -------------------------------------------------------------
        _anthropic(
            "claude-3-haiku",
            "anthropic.claude-3-haiku-20240307-v1:0",
            _p("0.25", "1.25"),
            ("claude-3-haiku-20240307",),
            _US_EU_APAC,
            profile_only=False,
            capabilities=_CLAUDE,
        ),
        _anthropic(
            "claude-3-sonnet",
            "anthropic.claude-3-sonnet-20240229-v1:0",
            _p("3", "15"),
            ("claude-3-sonnet-20240229",),
            _US_EU_APAC,
            profile_only=False,
            capabilities=frozenset({"tools", "vision"}),
        ),
        _anthropic(
            "claude-3-opus",
            "anthropic.claude-3-opus-20240229-v1:0",
            _p("15", "75", "1.5", "18.75"),
            ("claude-3-opus-20240229", "claude-3-opus-latest"),
            ("us", "eu"),
            profile_only=False,
            capabilities=frozenset({"tools", "vision"}),
        ),
        _anthropic(
            "claude-3-5-haiku",
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            _p("0.8", "4", "0.08", "1"),
            ("claude-3-5-haiku-20241022", "claude-3-5-haiku-latest"),
            ("us", "eu"),
            profile_only=False,
            capabilities=frozenset({"tools", "caching"}),
        ),
        _anthropic(
            "claude-3-5-sonnet-v1",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-3-5-sonnet-20240620",),
            _US_EU_APAC,
            profile_only=False,
            capabilities=_CLAUDE,
        ),
        _anthropic(
            "claude-3-5-sonnet",
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet-latest", "claude-3-5-sonnet-v2"),
            _US_EU_APAC,
            capabilities=_CLAUDE,
        ),
        _anthropic(
            "claude-3-7-sonnet",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest"),
            ("us", "eu"),
        ),
        _anthropic(
            "claude-sonnet-4",
            "anthropic.claude-sonnet-4-20250514-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
            ("global", "us", "eu", "apac"),
        ),
        _anthropic(
            "claude-opus-4",
            "anthropic.claude-opus-4-20250514-v1:0",
            _p("15", "75", "1.5", "18.75"),
            ("claude-opus-4-20250514", "claude-opus-4-0"),
            ("us", "eu"),
        ),
        _anthropic(
            "claude-opus-4-1",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            _p("15", "75", "1.5", "18.75"),
            ("claude-opus-4-1-20250805",),
            ("us", "eu"),
        ),
        _anthropic(
            "claude-sonnet-4-5",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-sonnet-4-5-20250929",),
            _ALL_GEOS,
            geo_premium=True,
        ),
        _anthropic(
            "claude-haiku-4-5",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            _p("1", "5", "0.1", "1.25"),
            ("claude-haiku-4-5-20251001",),
            _ALL_GEOS,
            geo_premium=True,
        ),
        _anthropic(
            "claude-opus-4-5",
            "anthropic.claude-opus-4-5-20251101-v1:0",
            _p("5", "25", "0.5", "6.25"),
            ("claude-opus-4-5-20251101",),
            _ALL_GEOS,
            geo_premium=True,
        ),
        _anthropic(
            "claude-opus-4-6",
            "anthropic.claude-opus-4-6-v1",
            _p("5", "25", "0.5", "6.25"),
            (),
            _ALL_GEOS,
            geo_premium=True,
            context_window=1_000_000,
        ),
        _anthropic(
            "claude-sonnet-4-6",
            "anthropic.claude-sonnet-4-6",
            _p("3", "15", "0.3", "3.75"),
            (),
            _ALL_GEOS,
            geo_premium=True,
            context_window=1_000_000,
        ),
        # --- Amazon Nova ------------------------------------------------------------------
        ModelEntry(
            "nova-micro",
            "amazon.nova-micro-v1:0",
            "amazon",
            _p("0.035", "0.14", "0.00875"),
            ("amazon-nova-micro",),
            _US_EU_APAC,
            capabilities=frozenset({"tools", "caching"}),
            context_window=128_000,
        ),
        ModelEntry(
            "nova-lite",
            "amazon.nova-lite-v1:0",
            "amazon",
            _p("0.06", "0.24", "0.015"),
            ("amazon-nova-lite",),
            _US_EU_APAC,
            capabilities=frozenset({"tools", "vision", "caching"}),
            context_window=300_000,
        ),
        ModelEntry(
            "nova-pro",
            "amazon.nova-pro-v1:0",
            "amazon",
            _p("0.8", "3.2", "0.2"),
            ("amazon-nova-pro",),
            _US_EU_APAC,
            capabilities=frozenset({"tools", "vision", "caching"}),
            context_window=300_000,
        ),
        # --- Meta Llama -------------------------------------------------------------------
        ModelEntry(
            "llama3-8b",
            "meta.llama3-8b-instruct-v1:0",
            "meta",
            _p("0.30", "0.60"),
            context_window=8_000,
        ),
        ModelEntry(
            "llama3-70b",
            "meta.llama3-70b-instruct-v1:0",
            "meta",
            _p("2.65", "3.50"),
            context_window=8_000,
        ),
        ModelEntry(
            "llama3-1-8b",
            "meta.llama3-1-8b-instruct-v1:0",
            "meta",
            _p("0.22", "0.22"),
            profiles=("us",),
            profile_only=True,
            capabilities=frozenset({"tools"}),
            context_window=128_000,
        ),
        ModelEntry(
            "llama3-1-70b",
            "meta.llama3-1-70b-instruct-v1:0",
            "meta",
            _p("0.72", "0.72"),
            profiles=("us",),
            profile_only=True,
            capabilities=frozenset({"tools"}),
            context_window=128_000,
        ),
        ModelEntry(
            "llama3-1-405b",
            "meta.llama3-1-405b-instruct-v1:0",
            "meta",
            _p("2.4", "2.4"),
            profiles=("us",),
            profile_only=True,
            capabilities=frozenset({"tools"}),
            context_window=128_000,
        ),
        ModelEntry(
            "llama3-3-70b",
            "meta.llama3-3-70b-instruct-v1:0",
            "meta",
            _p("0.72", "0.72"),
            profiles=("us",),
            profile_only=True,
            capabilities=frozenset({"tools"}),
            context_window=128_000,
        ),
        # --- Mistral, DeepSeek ------------------------------------------------------------
        ModelEntry(
            "mistral-large",
            "mistral.mistral-large-2407-v1:0",
            "mistral",
            _p("2", "6"),
            ("mistral-large-2407",),
            capabilities=frozenset({"tools"}),
            context_window=128_000,
        ),
        ModelEntry(
            "deepseek-r1",
            "deepseek.r1-v1:0",
            "deepseek",
            _p("1.35", "5.40"),
            profiles=("us",),
            profile_only=True,
            capabilities=frozenset({"reasoning"}),
            context_window=128_000,
        ),
        # --- Embeddings -------------------------------------------------------------------
        ModelEntry(
            "titan-embed-text-v2",
            "amazon.titan-embed-text-v2:0",
            "amazon",
            _p("0.02", "0"),
            capabilities=frozenset({"embeddings"}),
            context_window=8_192,
            kind="embedding",
        ),
        ModelEntry(
            "cohere-embed-english-v3",
            "cohere.embed-english-v3",
            "cohere",
            _p("0.10", "0"),
            capabilities=frozenset({"embeddings"}),
            context_window=512,
            kind="embedding",
        ),
        ModelEntry(
            "cohere-embed-multilingual-v3",
            "cohere.embed-multilingual-v3",
            "cohere",
            _p("0.10", "0"),
            capabilities=frozenset({"embeddings"}),
            context_window=512,
            kind="embedding",
        ),
    ]
)
"""The built-in catalogue."""
