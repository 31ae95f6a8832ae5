"""A flood of large request bodies cannot take the edge's memory, key or no key.

authz reads a model call's whole body, so Envoy buffers it (up to 32 MiB) before anyone
knows whether the caller has a key. A security test held 30 such bodies on one HTTP/2
connection without an API key: Envoy grew from 79 MiB to over 1 GiB. Now the edge has a
memory budget: near it, the streams buffering the most are reset, and a client's own requests
still get through afterwards.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import httpx
import psutil
from edge_process import running_edge, stand_in_authz, stand_in_upstream

BUDGET_MB = 256
STREAMS = 30
BODY = 31 * 2**20


def _open_h2(port: int, context: ssl.SSLContext) -> tuple[ssl.SSLSocket, h2.connection.H2Connection]:
    context.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    tls = context.wrap_socket(raw, server_hostname="localhost")
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    connection.initiate_connection()
    tls.sendall(connection.data_to_send())
    return tls, connection


def test_held_bodies_stay_within_the_memory_budget(tmp_path: Path) -> None:
    with (
        stand_in_authz() as authz,
        stand_in_upstream() as upstream,
        running_edge(tmp_path, tls=True, authz=authz, upstream=upstream, edge_max_heap_mb=BUDGET_MB) as edge,
    ):
        envoy = psutil.Process(edge.process.pid)
        before = envoy.memory_info().rss
        tls, connection = _open_h2(edge.port, edge.ssl_context())
        chunk = b"x" * 16384
        reset: set[int] = set()
        peak = before
        streams = []
        for _ in range(STREAMS):
            stream = connection.get_next_available_stream_id()
            connection.send_headers(
                stream,
                [
                    (":method", "POST"), (":path", "/v1/chat/completions"), (":scheme", "https"),
                    (":authority", "localhost"), ("content-type", "application/json"),
                    ("content-length", str(BODY)),
                ],
            )  # fmt: skip
            streams.append(stream)
        sent = dict.fromkeys(streams, 0)
        deadline = time.monotonic() + 120
        tls.settimeout(0.01)
        # Push every body as far as flow control lets us, never ending one: held buffers.
        while time.monotonic() < deadline and any(
            sent[s] < BODY - len(chunk) for s in streams if s not in reset
        ):
            progressed = False
            for stream in streams:
                if stream in reset or sent[stream] >= BODY - len(chunk):
                    continue
                window = min(connection.local_flow_control_window(stream), connection.max_outbound_frame_size)
                if window >= len(chunk):
                    connection.send_data(stream, chunk)
                    sent[stream] += len(chunk)
                    progressed = True
            tls.sendall(connection.data_to_send())
            try:
                for event in connection.receive_data(tls.recv(65536)):
                    if isinstance(event, h2.events.StreamReset):
                        reset.add(event.stream_id)
                tls.sendall(connection.data_to_send())
            except (TimeoutError, ssl.SSLWantReadError):
                pass
            peak = max(peak, envoy.memory_info().rss)
            if not progressed:
                time.sleep(0.01)
        peak = max(peak, envoy.memory_info().rss)
        # Another client is served while the flood is still held: at once, or as soon as the
        # reset streams' memory is back under the budget (new requests wait out the last 2%).
        with httpx.Client(base_url=edge.base_url, verify=edge.ssl_context()) as client:
            deadline = time.monotonic() + 15
            while True:
                answered = client.post(
                    "/v1/chat/completions", json={"model": "m"}, headers={"authorization": "Bearer br-x"}
                )
                if answered.status_code != 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        tls.close()
    assert reset, "no stream was reset: the budget was never enforced"
    assert peak - before < (BUDGET_MB + 128) * 2**20, f"Envoy grew by {(peak - before) / 2**20:.0f} MiB"
    assert answered.status_code == 200
