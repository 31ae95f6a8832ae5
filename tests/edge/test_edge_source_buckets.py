"""The per-source connection limit: which bucket an address falls in, and the chains behind it.

Envoy picks a connection's filter chain by matching the text of its source address against
one RE2 pattern per bucket (edge/source_limits.py). Every address must match exactly the
pattern of its own bucket (its last byte modulo BUCKETS), whatever its form: IPv4, IPv6
compressed or not, IPv4-mapped. Python's `re` reads these patterns as RE2 does (plain
alternations, classes and counted repeats); a real Envoy checks IPv6 below.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from edge_process import running_edge, stand_in_authz, stand_in_upstream
from raw_connections import held_open

from edge import source_limits
from edge.envoy_config import EdgeConfig, build_bootstrap, render
from edge.source_limits import BUCKETS, bucket_chain_name, bucket_of, bucket_pattern
from edge.tls import ensure_self_signed

PATTERNS = {bucket: re.compile(bucket_pattern(bucket)) for bucket in range(1, BUCKETS)}


def matched_bucket(text: str) -> int:
    """The bucket Envoy's matcher gives `text`: the first pattern that matches, else 0."""
    hits = [bucket for bucket, pattern in PATTERNS.items() if pattern.fullmatch(text)]
    assert len(hits) <= 1, (text, hits)
    return hits[0] if hits else 0


def addresses() -> list[str]:
    chosen = random.Random(20261203)
    found = [
        "127.0.0.1", "127.0.0.2", "127.0.0.65", "10.0.0.0", "255.255.255.255", "0.0.0.0",
        "::", "::1", "::ffff:10.0.0.65", "::ffff:0.0.0.0", "2001:db8::", "2001:db8::100", "fe80::1",
        "2001:db8:0:1:ffff:ffff:ffff:ffff", "2001:db8::a:0", "2001:db8::f", "2001:db8::40",
    ]  # fmt: skip
    for _ in range(5000):
        found.append(str(ipaddress.IPv4Address(chosen.getrandbits(32))))
        value = chosen.getrandbits(128)
        if chosen.random() < 0.5:  # runs of zero groups, so that `::` turns up anywhere
            value &= ~(((1 << 16 * chosen.randint(1, 6)) - 1) << 16 * chosen.randint(0, 2))
        found.append(str(ipaddress.IPv6Address(value)))
    return found


def test_every_address_matches_exactly_its_own_bucket() -> None:
    for text in addresses():
        expected = ipaddress.ip_address(text)
        if isinstance(expected, ipaddress.IPv6Address) and expected.ipv4_mapped is not None:
            expected = expected.ipv4_mapped
        assert bucket_of(text) == expected.packed[-1] % BUCKETS
        assert matched_bucket(text) == bucket_of(text), text


def test_neighbours_fall_in_different_buckets() -> None:
    assert len({bucket_of(f"192.168.1.{n}") for n in range(BUCKETS)}) == BUCKETS
    assert bucket_of("192.168.1.1") == bucket_of("192.168.1.65") == bucket_of("10.9.8.129")
    assert bucket_of("::1") == bucket_of("127.0.0.1") == 1


@pytest.mark.parametrize("bucket", [-1, BUCKETS])
def test_no_pattern_for_a_bucket_that_does_not_exist(bucket: int) -> None:
    with pytest.raises(ValueError):
        bucket_pattern(bucket)


def listener(per_source: int, ceiling: int = 100) -> dict[str, Any]:
    config = EdgeConfig(
        "127.0.0.1", 8866, Path("/tmp/admin.sock"), None, None, ("127.0.0.1", 1), ("127.0.0.1", 2),
        ("127.0.0.1", 3), max_connections=ceiling, max_connections_per_source=per_source,
        internal_token="internal-token-for-tests-0123456789abcdef",
    )  # fmt: skip
    (found,) = json.loads(render(config))["staticResources"]["listeners"]
    data: dict[str, Any] = found
    return data


def test_one_chain_per_bucket_each_with_the_limit() -> None:
    found = listener(per_source=7)
    assert found["enableReusePort"] is False
    chains = found["filterChains"]
    assert [chain["name"] for chain in chains] == [bucket_chain_name(b) for b in range(BUCKETS)]
    for bucket, chain in enumerate(chains):
        limit, manager = chain["filters"]
        assert int(limit["typedConfig"]["maxConnections"]) == 7
        assert limit["typedConfig"]["statPrefix"] == f"source_bucket_{bucket}"
        assert manager["name"] == "envoy.filters.network.http_connection_manager"
    matcher = found["filterChainMatcher"]
    chosen = [m["onMatch"]["action"]["typedConfig"]["value"] for m in matcher["matcherList"]["matchers"]]
    assert chosen == [bucket_chain_name(b) for b in range(1, BUCKETS)]
    assert matcher["onNoMatch"]["action"]["typedConfig"]["value"] == bucket_chain_name(0)


@pytest.mark.parametrize("per_source", [100, 101, 2**31 - 1])
def test_no_per_source_limit_at_or_above_the_ceiling(per_source: int) -> None:
    found = listener(per_source=per_source, ceiling=100)
    (chain,) = found["filterChains"]
    assert [f["name"] for f in chain["filters"]] == ["envoy.filters.network.http_connection_manager"]
    assert "filterChainMatcher" not in found


def test_ipv6_clients_are_limited_per_address_too(tmp_path: Path) -> None:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with (
        stand_in_authz() as authz,
        stand_in_upstream() as upstream,
        running_edge(
            tmp_path, tls=False, authz=authz, upstream=upstream, host="::1",
            max_connections=100, max_connections_per_source=3,
        ) as edge,
    ):  # fmt: skip
        time.sleep(0.5)  # until Envoy has seen the start-up probe (also from ::1) close
        with held_open(edge.connect, 5) as held:
            time.sleep(0.5)
            closed, _, _ = select.select(held, [], [], 1)
            assert len(closed) == 2
            for connection in held:
                if connection not in closed:
                    connection.sendall(b"GET /v1/models HTTP/1.1\r\nHost: edge\r\n\r\n")
                    assert connection.recv(65536).startswith(b"HTTP/1.1 200")


def test_render_writes_each_shared_part_once_and_the_same_json(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`render` serialises the chains' shared connection manager once; the JSON is the same as
    betterproto's own serialisation of the whole bootstrap (four buckets: that one is slow)."""
    monkeypatch.setattr(source_limits, "BUCKETS", 4)
    cert, key, _ = ensure_self_signed(tmp_path)
    config = EdgeConfig(
        "127.0.0.1", 8866, tmp_path / "admin.sock", cert, key, ("127.0.0.1", 1), ("127.0.0.1", 2),
        ("127.0.0.1", 3), max_connections=100, max_connections_per_source=5,
        internal_token="internal-token-for-tests-0123456789abcdef",
    )  # fmt: skip
    rendered = json.loads(render(config))
    assert len(rendered["staticResources"]["listeners"][0]["filterChains"]) == 4
    assert rendered == json.loads(json.dumps(build_bootstrap(config).to_dict()))
