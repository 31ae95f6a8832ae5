"""A ceiling on the connections one source address may hold open at the edge.

Envoy counts connections only globally, per listener or per filter chain; it has no counter
per client (envoyproxy/envoy#27853, closed unimplemented). So the listener gets one filter
chain per *source bucket*, each with its own `connection_limit` filter, and a matcher sends
every new connection to the chain of its bucket before a byte is read (idle sockets that
never start a TLS handshake count too). An address's bucket is its last byte modulo
`BUCKETS` (IPv4's last octet, IPv6's last eight bits; an IPv4-mapped IPv6 address counts as
IPv4): neighbours on a LAN fall in different buckets, and two clients share one when their
last bytes are equal modulo 64 (.1, .65, .129 and .193), one in 64 for unrelated clients.

A client that floods the edge fills its own bucket and is refused there; the other buckets,
and with them every other client, keep their connections, up to the global ceiling.
"""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

from envoy_data_plane.envoy.config.core.v3 import TransportSocket
from envoy_data_plane.envoy.config.listener.v3 import Filter, FilterChain
from envoy_data_plane.envoy.extensions.filters.network.connection_limit.v3 import ConnectionLimit
from envoy_data_plane.envoy.extensions.matching.common_inputs.network.v3 import SourceIpInput
from envoy_data_plane.google.protobuf import Any as AnyProto
from envoy_data_plane.google.protobuf import StringValue
from envoy_data_plane.xds.core.v3 import TypedExtensionConfig
from envoy_data_plane.xds.type.matcher.v3 import (
    Matcher,
    MatcherMatcherList,
    MatcherMatcherListFieldMatcher,
    MatcherMatcherListPredicate,
    MatcherMatcherListPredicateSinglePredicate,
    MatcherOnMatch,
    RegexMatcher,
    RegexMatcherGoogleRe2,
    StringMatcher,
)

__all__ = [
    "BUCKETS",
    "bucket_chain_name",
    "bucket_of",
    "bucket_pattern",
    "chains_as_dicts",
    "per_source_chains",
]

BUCKETS = 64
"""Source buckets, each with its own connection limit: one filter chain each, and each chain
costs Envoy about 0.2 MB and 6 ms of start-up (64: +12 MB, +0.4 s; 256 would be +32 MB,
+1.9 s, measured on the 2-core test machine)."""


def bucket_chain_name(bucket: int) -> str:
    return f"source-bucket-{bucket}"


def bucket_of(address: str) -> int:
    """The bucket of an address (what the matcher below computes inside Envoy)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed[-1] % BUCKETS


def bucket_pattern(bucket: int) -> str:
    """An RE2 pattern matching, in full, the text of every address in `bucket`.

    Envoy writes addresses as inet_ntop does: IPv4 in dotted decimal without leading zeros,
    IPv6 compressed and in lower case, its last group in one to four hex digits (none after
    a trailing `::`, which is bucket 0's: the matcher's fallback).
    """
    if not 0 <= bucket < BUCKETS:
        raise ValueError(f"there is no bucket {bucket}")
    last_bytes = range(bucket, 256, BUCKETS)
    ipv4 = "|".join(str(byte) for byte in last_bytes)
    ipv6 = "|".join(f"{byte:02x}" for byte in last_bytes)
    short = "|".join(f"{byte:x}" for byte in last_bytes if byte < 16)  # a group of one digit
    group = f"[0-9a-f]{{0,2}}(?:{ipv6})" + (f"|{short}" if short else "")
    return rf".*(?:\.(?:{ipv4})|:(?:{group}))"


def _on_match(bucket: int) -> MatcherOnMatch:
    name = bucket_chain_name(bucket)
    return MatcherOnMatch(
        action=TypedExtensionConfig(name=name, typed_config=AnyProto.pack(StringValue(value=name)))
    )


def _matcher() -> Matcher:
    source_ip = TypedExtensionConfig(name="source_ip", typed_config=AnyProto.pack(SourceIpInput()))
    by_last_byte = [
        MatcherMatcherListFieldMatcher(
            predicate=MatcherMatcherListPredicate(
                single_predicate=MatcherMatcherListPredicateSinglePredicate(
                    input=source_ip,
                    value_match=StringMatcher(
                        safe_regex=RegexMatcher(
                            google_re2=RegexMatcherGoogleRe2(), regex=bucket_pattern(bucket)
                        )
                    ),
                )
            ),
            on_match=_on_match(bucket),
        )
        for bucket in range(1, BUCKETS)
    ]
    # Bucket 0 is the fallback: last byte 0, a trailing `::`, or any address text not foreseen.
    return Matcher(matcher_list=MatcherMatcherList(matchers=by_last_byte), on_no_match=_on_match(0))


def per_source_chains(template: FilterChain, limit: int) -> tuple[list[FilterChain], Matcher]:
    """The listener's filter chains, one per bucket (`template`'s with a connection limit in
    front), and the matcher that picks a connection's chain by its source address."""
    chains = []
    for bucket in range(BUCKETS):
        limiter = ConnectionLimit(stat_prefix=f"source_bucket_{bucket}", max_connections=limit)
        chains.append(
            FilterChain(
                name=bucket_chain_name(bucket),
                filters=[
                    Filter(
                        name="envoy.filters.network.connection_limit", typed_config=AnyProto.pack(limiter)
                    ),
                    *template.filters,
                ],
                transport_socket=template.transport_socket,
                transport_socket_connect_timeout=template.transport_socket_connect_timeout,
            )
        )
    return chains, _matcher()


def chains_as_dicts(chains: list[FilterChain]) -> list[dict[str, Any]]:
    """`chains` as Envoy's JSON, each message they share serialised once.

    The per-source chains hold the same HTTP connection manager and TLS context; betterproto
    takes a quarter of a second to serialise one connection manager, so once per chain would
    make `brproxy up` wait a minute.
    """
    done: dict[int, dict[str, Any]] = {}

    def once(message: Filter | TransportSocket) -> dict[str, Any]:
        if id(message) not in done:
            done[id(message)] = message.to_dict()
        return done[id(message)]

    rendered = []
    for chain in chains:
        shell = copy.copy(chain)
        shell.filters = []
        shell.transport_socket = None
        data: dict[str, Any] = shell.to_dict()
        data["filters"] = [once(f) for f in chain.filters]
        if chain.transport_socket is not None:
            data["transportSocket"] = once(chain.transport_socket)
        rendered.append(data)
    return rendered
