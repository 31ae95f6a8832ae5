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
from typing import TypeVar

__all__ = [
    "CAPABILITIES",
    "CATALOGUE",
    "KINDS",
    "PROFILE_PREFIXES",
    "Catalogue",
    "ModelEntry",
    "ModelOverride",
    "Prices",
    "ResolvedModel",
    "base_model_id",
    "geo_for_region",
    "highest_prices",
]

PROFILE_PREFIXES = ("global", "us", "eu", "apac", "jp", "au", "us-gov")
CAPABILITIES = frozenset({"tools", "vision", "reasoning", "caching", "cache_ttl", "embeddings"})
"""What a model can do; `cache_ttl` means `cache_control.ttl` ("5m"/"1h") is accepted."""
KINDS = frozenset({"chat", "embedding"})
_GEO_PREMIUM = Decimal("1.1")
_T = TypeVar("_T")


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
    max_output_tokens: int = 0
    """Bedrock's limit on a call's output where it is below the default output ceiling (Llama:
    2,048); 0 when the default ceiling is within the model's limit."""
    kind: str = "chat"
    """"chat" or "embedding"."""
    enabled: bool = True
    """False: an admin switched it off; clients get 404, but calls in flight are still priced."""
    betas: frozenset[str] = frozenset()
    """`anthropic-beta` flags Bedrock accepts for this model; others are dropped, not sent."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A client's model name resolved for one request."""

    entry: ModelEntry
    bedrock_id: str
    """The id to send to Bedrock (a profile id where one is required or was asked for)."""
    prices: Prices
    """Prices for this exact id (geo premium applied)."""


def highest_prices(entry: ModelEntry) -> Prices:
    """The most any route to the model costs: a geographic profile's premium included."""
    return entry.prices.scaled(_GEO_PREMIUM) if entry.geo_premium else entry.prices


def base_model_id(model_id: str) -> str:
    """A Bedrock id without its inference-profile prefix (`us.anthropic.x` → `anthropic.x`)."""
    prefix, dot, rest = model_id.partition(".")
    if dot and prefix in PROFILE_PREFIXES and "." in rest:
        return rest
    return model_id


@dataclass(frozen=True, slots=True)
class ModelOverride:
    """An admin's change to one model (a row of `model_overrides`): None keeps the built-in value.

    A name that is not built in adds a model; it then needs at least `base_id`, `provider` and
    the input and output prices.
    """

    name: str
    base_id: str | None = None
    provider: str | None = None
    kind: str | None = None
    aliases: tuple[str, ...] | None = None
    profiles: tuple[str, ...] | None = None
    profile_only: bool | None = None
    geo_premium: bool | None = None
    capabilities: frozenset[str] | None = None
    betas: frozenset[str] | None = None
    context_window: int | None = None
    price_input: Decimal | None = None
    price_output: Decimal | None = None
    price_cache_read: Decimal | None = None
    price_cache_write: Decimal | None = None
    enabled: bool | None = None

    def apply(self, base: ModelEntry | None) -> ModelEntry:
        """The entry this override makes of `base` (None: a model the admin adds)."""
        if base is None:
            missing = [
                field
                for field in ("base_id", "provider", "price_input", "price_output")
                if getattr(self, field) is None
            ]
            if missing:
                raise ValueError(f"a new model needs {', '.join(missing)}")
            assert self.base_id is not None and self.provider is not None
            assert self.price_input is not None and self.price_output is not None
            base = ModelEntry(
                self.name, self.base_id, self.provider, Prices(self.price_input, self.price_output)
            )
        prices = Prices(
            _pick(self.price_input, base.prices.input),
            _pick(self.price_output, base.prices.output),
            _pick(self.price_cache_read, base.prices.cache_read),
            _pick(self.price_cache_write, base.prices.cache_write),
        )
        entry = ModelEntry(
            name=self.name,
            base_id=_pick(self.base_id, base.base_id),
            provider=_pick(self.provider, base.provider),
            prices=prices,
            aliases=_pick(self.aliases, base.aliases),
            profiles=_pick(self.profiles, base.profiles),
            profile_only=_pick(self.profile_only, base.profile_only),
            geo_premium=_pick(self.geo_premium, base.geo_premium),
            capabilities=_pick(self.capabilities, base.capabilities),
            context_window=_pick(self.context_window, base.context_window),
            max_output_tokens=base.max_output_tokens,
            kind=_pick(self.kind, base.kind),
            enabled=_pick(self.enabled, base.enabled),
            betas=_pick(self.betas, base.betas),
        )
        _validate(entry)
        return entry


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _validate(entry: ModelEntry) -> None:
    if not entry.name or entry.name != entry.name.strip():
        raise ValueError("name must be a non-empty string without surrounding spaces")
    if "." not in entry.base_id or base_model_id(entry.base_id) != entry.base_id:
        raise ValueError(f"base_id {entry.base_id!r} must be a Bedrock model id without a profile prefix")
    if entry.kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}")
    unknown = entry.capabilities - CAPABILITIES
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
    bad_profiles = set(entry.profiles) - set(PROFILE_PREFIXES)
    if bad_profiles:
        raise ValueError(f"unknown profiles {sorted(bad_profiles)}; known: {list(PROFILE_PREFIXES)}")
    if entry.profile_only and not entry.profiles:
        raise ValueError("a profile-only model needs at least one profile")
    if entry.context_window <= 0:
        raise ValueError("context_window must be positive")
    for price in (entry.prices.input, entry.prices.output, entry.prices.cache_read, entry.prices.cache_write):
        if not price.is_finite() or price < 0:
            raise ValueError("prices must be non-negative numbers")


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
            if entry.base_id in self._by_base_id:
                raise ValueError(f"Bedrock id {entry.base_id!r} is listed twice")
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

    def entry(self, name: str) -> ModelEntry | None:
        """The entry a catalogue name or alias stands for (not Bedrock ids)."""
        return self._by_name.get(name)

    def with_overrides(self, overrides: Iterable[ModelOverride]) -> Catalogue:
        """This catalogue with admins' changes applied; raises ValueError for an invalid one."""
        entries = {entry.name: entry for entry in self.entries}
        for override in overrides:
            try:
                entries[override.name] = override.apply(entries.get(override.name))
            except ValueError as error:
                raise ValueError(f"model {override.name!r}: {error}") from None
        return Catalogue(entries.values())


def _p(inp: str, out: str, cache_read: str = "0", cache_write: str = "0") -> Prices:
    return Prices(Decimal(inp), Decimal(out), Decimal(cache_read), Decimal(cache_write))


_CLAUDE = frozenset({"tools", "vision", "caching"})
_CLAUDE_REASONING = _CLAUDE | {"reasoning"}
_US_EU_APAC = ("us", "eu", "apac")
_ALL_GEOS = ("global", "us", "eu", "apac", "jp", "au")
_CLAUDE_4_5 = _CLAUDE_REASONING | {"cache_ttl"}

# anthropic-beta flags Bedrock accepts, per model generation (LiteLLM's `bedrock` column of
# anthropic_beta_headers_config.json, narrowed per model as Bedrock's model pages list them).
# Anything else a client sends (claude-code-*, oauth-*, prompt-caching-scope, files-api, mcp-*,
# skills, web-*, code-execution, structured-outputs, token-efficient-tools, output-128k, ...)
# is dropped together with the body fields it gates.
_INTERLEAVED = "interleaved-thinking-2025-05-14"
_CONTEXT_1M = "context-1m-2025-08-07"
_WITH_CONTEXT_1M = 1_000_000
"""The context window of a model Bedrock serves up to a million tokens with the beta above:
what bounds a prompt (core/admission.py) is the most it can take."""
_BETAS_4 = frozenset({_INTERLEAVED, "fine-grained-tool-streaming-2025-05-14", "computer-use-2025-01-24"})
# context-management is left out: Bedrock refuses the `context_management` field Claude Code
# sends with it ("Extra inputs are not permitted"), so both are dropped.
_BETAS_4_5 = _BETAS_4 | {"tool-search-tool-2025-10-19"}
_BETAS_4_6 = _BETAS_4_5 | {"effort-2025-11-24", _CONTEXT_1M, "computer-use-2025-11-24"}


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
    betas: frozenset[str] = frozenset(),
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
        betas=betas,
    )


_NONE: frozenset[str] = frozenset()
_VISION = frozenset({"tools", "vision"})


_LLAMA_MAX_GEN_LEN = 2048
"""Bedrock's `max_gen_len` limit for every Llama model."""


def _llama_us(
    name: str, base_id: str, price: str, *, capabilities: frozenset[str] = frozenset({"tools"})
) -> ModelEntry:
    """A Llama 3.1+ model: served only through the `us.` profile, one price in and out."""
    return ModelEntry(
        name,
        base_id,
        "meta",
        _p(price, price),
        profiles=("us",),
        profile_only=True,
        capabilities=capabilities,
        context_window=128_000,
        max_output_tokens=_LLAMA_MAX_GEN_LEN,
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
            capabilities=frozenset({"tools", "vision"}),
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
            betas=frozenset({"computer-use-2024-10-22"}),
        ),
        _anthropic(
            "claude-3-7-sonnet",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet-latest"),
            ("us", "eu"),
            betas=frozenset({"computer-use-2025-01-24"}),
        ),
        _anthropic(
            "claude-sonnet-4",
            "anthropic.claude-sonnet-4-20250514-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-sonnet-4-20250514", "claude-sonnet-4-0"),
            ("global", "us", "eu", "apac"),
            betas=_BETAS_4 | {_CONTEXT_1M},
            context_window=_WITH_CONTEXT_1M,
        ),
        _anthropic(
            "claude-opus-4",
            "anthropic.claude-opus-4-20250514-v1:0",
            _p("15", "75", "1.5", "18.75"),
            ("claude-opus-4-20250514", "claude-opus-4-0"),
            ("us", "eu"),
            betas=_BETAS_4,
        ),
        _anthropic(
            "claude-opus-4-1",
            "anthropic.claude-opus-4-1-20250805-v1:0",
            _p("15", "75", "1.5", "18.75"),
            ("claude-opus-4-1-20250805",),
            ("us", "eu"),
            betas=_BETAS_4,
        ),
        _anthropic(
            "claude-sonnet-4-5",
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            _p("3", "15", "0.3", "3.75"),
            ("claude-sonnet-4-5-20250929",),
            (*_ALL_GEOS, "us-gov"),
            geo_premium=True,
            betas=_BETAS_4_5 | {_CONTEXT_1M},
            capabilities=_CLAUDE_4_5,
            context_window=_WITH_CONTEXT_1M,
        ),
        _anthropic(
            "claude-haiku-4-5",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            _p("1", "5", "0.1", "1.25"),
            ("claude-haiku-4-5-20251001",),
            _ALL_GEOS,
            geo_premium=True,
            betas=_BETAS_4,
            capabilities=_CLAUDE_4_5,
        ),
        _anthropic(
            "claude-opus-4-5",
            "anthropic.claude-opus-4-5-20251101-v1:0",
            _p("5", "25", "0.5", "6.25"),
            ("claude-opus-4-5-20251101",),
            _ALL_GEOS,
            geo_premium=True,
            betas=_BETAS_4_5 | {"effort-2025-11-24", "computer-use-2025-11-24"},
            capabilities=_CLAUDE_4_5,
        ),
        _anthropic(
            "claude-opus-4-6",
            "anthropic.claude-opus-4-6-v1",
            _p("5", "25", "0.5", "6.25"),
            (),
            _ALL_GEOS,
            geo_premium=True,
            context_window=1_000_000,
            betas=_BETAS_4_6,
            capabilities=_CLAUDE_4_5,
        ),
        _anthropic(
            "claude-sonnet-4-6",
            "anthropic.claude-sonnet-4-6",
            _p("3", "15", "0.3", "3.75"),
            (),
            _ALL_GEOS,
            geo_premium=True,
            context_window=1_000_000,
            betas=_BETAS_4_6,
            capabilities=_CLAUDE_4_5,
        ),
        # From 4.7 on the id is undated: `anthropic.<API name>`. Bedrock took only the
        # interleaved-thinking beta for them at launch.
        *(
            _anthropic(
                name,
                f"anthropic.{name}",
                _p("5", "25", "0.5", "6.25"),
                (),
                _ALL_GEOS,
                geo_premium=True,
                capabilities=_CLAUDE_4_5,
                context_window=1_000_000,
                betas=frozenset({_INTERLEAVED}),
            )
            for name in ("claude-opus-4-7", "claude-opus-4-8")
        ),
        # --- Amazon Nova ------------------------------------------------------------------
        ModelEntry(
            "nova-micro",
            "amazon.nova-micro-v1:0",
            "amazon",
            _p("0.035", "0.14", "0.00875", "0.035"),
            ("amazon-nova-micro",),
            _US_EU_APAC,
            capabilities=frozenset({"tools", "caching"}),
            context_window=128_000,
        ),
        ModelEntry(
            "nova-lite",
            "amazon.nova-lite-v1:0",
            "amazon",
            _p("0.06", "0.24", "0.015", "0.06"),
            ("amazon-nova-lite",),
            _US_EU_APAC,
            capabilities=frozenset({"tools", "vision", "caching"}),
            context_window=300_000,
        ),
        ModelEntry(
            "nova-pro",
            "amazon.nova-pro-v1:0",
            "amazon",
            _p("0.8", "3.2", "0.2", "0.8"),
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
            max_output_tokens=_LLAMA_MAX_GEN_LEN,
        ),
        ModelEntry(
            "llama3-70b",
            "meta.llama3-70b-instruct-v1:0",
            "meta",
            _p("2.65", "3.50"),
            context_window=8_000,
            max_output_tokens=_LLAMA_MAX_GEN_LEN,
        ),
        _llama_us("llama3-1-8b", "meta.llama3-1-8b-instruct-v1:0", "0.22"),
        _llama_us("llama3-1-70b", "meta.llama3-1-70b-instruct-v1:0", "0.72"),
        _llama_us("llama3-1-405b", "meta.llama3-1-405b-instruct-v1:0", "2.4"),
        _llama_us("llama3-3-70b", "meta.llama3-3-70b-instruct-v1:0", "0.72"),
        _llama_us("llama3-2-1b", "meta.llama3-2-1b-instruct-v1:0", "0.10", capabilities=_NONE),
        _llama_us("llama3-2-3b", "meta.llama3-2-3b-instruct-v1:0", "0.15", capabilities=_NONE),
        _llama_us("llama3-2-11b", "meta.llama3-2-11b-instruct-v1:0", "0.16", capabilities=_VISION),
        _llama_us("llama3-2-90b", "meta.llama3-2-90b-instruct-v1:0", "0.72", capabilities=_VISION),
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
            "mistral-large-2402",
            "mistral.mistral-large-2402-v1:0",
            "mistral",
            _p("4", "12"),
            capabilities=frozenset({"tools"}),
            context_window=32_000,
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
            "cohere-embed-v4",
            "cohere.embed-v4:0",
            "cohere",
            _p("0.12", "0"),
            capabilities=frozenset({"embeddings"}),
            context_window=128_000,
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
