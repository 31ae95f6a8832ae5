"""Only the edge is trusted (issue 12): every service behind Envoy refuses what did not come through it.

One `brproxy up`, whose services listen on Unix sockets in `<data dir>/run` (0700): the
test, their owner, calls each service there directly, as a process of the stack's own user
could: the translator's model routes, the admin API's key routes, the meter's `/events`,
authz's gRPC `Check`, and Envoy's admin interface. Each is called with no internal token,
with forged identity headers, and with a wrong token; each refuses, in the client's error
shape where it has one, and nothing changes: no key is created, nothing is billed or
reserved (checked in Postgres and through the edge). Another local user (uid 65534) cannot
reach them at all, nor take their place, not even while one restarts. Through the edge
everything still works, even for a client that sends internal headers of its own. The data
dir is one every user may enter, as a checkout in a shared home would be.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import httpx
import psutil
import pytest
from e2e_clients import openai_sdk
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from local_ports import free_port
from other_user import connect_as_nobody, directory_anyone_may_enter, need_root, python_as_nobody
from stack_process import Stack, start_stack, stop_stack

from core.internal_headers import INTERNAL_TOKEN, KEY_ID, KEY_ROLE

pytestmark = pytest.mark.e2e

WRONG_TOKEN = "a-well-formed-but-wrong-internal-token-0123456789"
# A simulator marker in the prompt: the answer's usage is 5 output tokens.
PROMPT = "hi [[sim:tokens=5]]"


SERVICES = ("authz", "translator", "meter", "admin")
SERVICE_PROCESSES = {
    "authz": "-m authz",
    "translator": "-m translator",
    "meter": "-m meter",
    "admin": "-m admin_api",
}


@dataclass
class Deployment:
    stack: Stack
    ports: dict[str, int]
    """The TCP ports the stack was asked for (BRPROXY_*_PORT): on one machine it must use none."""
    token: str
    victim: dict[str, Any]
    """A user key with money: whom a forged call would bill."""

    @property
    def socket_dir(self) -> Path:
        return self.stack.data_dir / "run"

    def socket(self, service: str) -> Path:
        return self.socket_dir / f"{service}.sock"

    def money(self) -> tuple[Any, ...]:
        (row,) = self.stack.sql(
            "SELECT balance, month_fee, total_fee FROM api_keys WHERE id = $1", self.victim["id"]
        )
        return tuple(row)

    def threads(self) -> int:
        (row,) = self.stack.sql("SELECT count(*) AS n FROM threads WHERE key_id = $1", self.victim["id"])
        return int(row["n"])

    def keys(self) -> int:
        (row,) = self.stack.sql("SELECT count(*) AS n FROM api_keys")
        return int(row["n"])


@pytest.fixture(scope="module")
def deployment(database_url: str) -> Iterator[Deployment]:
    ports = {service: free_port() for service in ("authz", "translator", "meter", "admin")}
    with directory_anyone_may_enter() as directory:
        stack = start_stack(
            directory / "data",
            database_url,
            env={f"BRPROXY_{service.upper()}_PORT": str(port) for service, port in ports.items()},
        )
        try:
            token = (directory / "data" / "internal-token").read_text().strip()
            victim = stack.create_key("victim", month_quota=0, balance=5)
            yield Deployment(stack, ports, token, victim)
        finally:
            assert not stop_stack(stack)


def direct(deployment: Deployment, service: str) -> httpx.Client:
    """A plain HTTP client to one service's socket, bypassing Envoy (never through a proxy)."""
    transport = httpx.HTTPTransport(uds=str(deployment.socket(service)))
    return httpx.Client(transport=transport, base_url=f"http://{service}", timeout=30, trust_env=False)


def authz_channel(deployment: Deployment) -> grpc.Channel:
    return grpc.insecure_channel(f"unix:{deployment.socket('authz')}")


def variants(deployment: Deployment, identity: dict[str, str]) -> list[dict[str, str]]:
    """The ways a caller who skips the edge may try: bare, forged identity, forged tokens
    (the last two are near misses of the real one)."""
    return [
        {},
        identity,
        identity | {INTERNAL_TOKEN: WRONG_TOKEN},
        identity | {INTERNAL_TOKEN: ""},
        identity | {INTERNAL_TOKEN: "x" * 8000},  # absurdly long
        identity | {INTERNAL_TOKEN: deployment.token.swapcase()},
        identity | {INTERNAL_TOKEN: deployment.token + "0"},
    ]


VARIANT_IDS = [
    "bare", "forged-identity", "wrong-token", "empty-token", "huge-token", "other-case", "longer",
]  # fmt: skip


def victim_identity(deployment: Deployment) -> dict[str, str]:
    return {KEY_ID: str(deployment.victim["id"]), KEY_ROLE: "user", "x-request-id": "forged-1"}


# --- the translator ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", range(len(VARIANT_IDS)), ids=VARIANT_IDS)
def test_the_translator_refuses_a_model_call_that_skipped_the_edge(
    deployment: Deployment, variant: int
) -> None:
    before = deployment.money(), deployment.threads()
    headers = variants(deployment, victim_identity(deployment))[variant]
    with direct(deployment, "translator") as translator:
        chat = translator.post(
            "/v1/chat/completions",
            headers=headers,
            json={"model": "claude-3-haiku", "messages": [{"role": "user", "content": PROMPT}]},
        )
        messages = translator.post(
            "/v1/messages",
            headers=headers | {"anthropic-version": "2023-06-01"},
            json={
                "model": "claude-3-haiku",
                "max_tokens": 50,
                "messages": [{"role": "user", "content": PROMPT}],
            },
        )

    assert chat.status_code == 401, chat.text
    assert chat.json()["error"]["code"] == "invalid_api_key"  # OpenAI's shape
    assert messages.status_code == 401, messages.text
    assert messages.json()["type"] == "error"  # Anthropic's shape
    assert messages.json()["error"]["type"] == "authentication_error"
    time.sleep(0.3)  # anything billed would be recorded by now (the translator flushes every 50 ms)
    assert (deployment.money(), deployment.threads()) == before


# --- the admin API ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", range(len(VARIANT_IDS)), ids=VARIANT_IDS)
def test_the_admin_api_refuses_a_bootstrap_key_request_that_skipped_the_edge(
    deployment: Deployment, variant: int
) -> None:
    keys = deployment.keys()
    bootstrap = {KEY_ID: "0", KEY_ROLE: "bootstrap", "x-request-id": "forged-2"}
    with direct(deployment, "admin") as admin_api:
        applied = admin_api.post(
            "/admin/api-key/apply",
            headers=variants(deployment, bootstrap)[variant],
            json={"name": "mallory", "role": "admin"},
        )
        mine = admin_api.get(
            "/user/api-key/mine", headers=variants(deployment, victim_identity(deployment))[variant]
        )

    for answer in (applied, mine):
        assert answer.status_code == 401, answer.text
        assert answer.json() == {
            "success": False,
            "data": "this service only answers requests that come through the gateway",
        }
    assert deployment.keys() == keys
    assert not deployment.stack.sql("SELECT 1 FROM api_keys WHERE name = 'mallory'")


def test_the_internal_token_is_what_opens_a_service(deployment: Deployment) -> None:
    """The control: the refusals above are the token's doing (its holder is the edge)."""
    with direct(deployment, "admin") as admin_api:
        mine = admin_api.get(
            "/user/api-key/mine", headers=victim_identity(deployment) | {INTERNAL_TOKEN: deployment.token}
        )
    assert mine.status_code == 200, mine.text
    assert mine.json()["data"]["id"] == deployment.victim["id"]


# --- the meter --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", range(len(VARIANT_IDS)), ids=VARIANT_IDS)
def test_the_meter_refuses_usage_events_that_skipped_the_translator(
    deployment: Deployment, variant: int
) -> None:
    before = deployment.money()
    event_id = str(uuid.uuid4())
    forged = {
        "event_id": event_id,
        "key_id": deployment.victim["id"],
        "model": "claude-3-haiku",
        "bedrock_model_id": "anthropic.claude-3-haiku-20240307-v1:0",
        "occurred_at": time.time(),
        "input_tokens": 1_000_000,
        "output_tokens": 1_000_000,
    }
    headers = variants(deployment, {"x-request-id": "forged-3"})[variant]
    with direct(deployment, "meter") as meter:
        answer = meter.post("/events", headers=headers, json={"events": [forged]})

    assert answer.status_code == 401, answer.text
    assert answer.json() == {"error": "only BRProxy's own services may call the meter"}
    assert not deployment.stack.sql("SELECT 1 FROM threads WHERE event_id = $1", uuid.UUID(event_id))
    assert deployment.money() == before


# --- authz ------------------------------------------------------------------------------------


def forged_check(key: str, request_id: str) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path, http.id = "POST", "/v1/chat/completions", request_id
    body = b'{"model": "claude-3-haiku", "max_tokens": 4096, "messages": [{"role": "user", "content": "x"}]}'
    http.headers.update(
        {"authorization": f"Bearer {key}", "x-request-id": request_id, "content-length": str(len(body))}
    )
    http.raw_body = body
    return request


@pytest.mark.parametrize(
    "metadata",
    [None, [(INTERNAL_TOKEN, WRONG_TOKEN)], [(INTERNAL_TOKEN, "")], [("x-brproxy-key-role", "bootstrap")]],
    ids=["no-token", "wrong-token", "empty-token", "forged-metadata"],
)
def test_authz_refuses_a_check_that_envoy_did_not_ask(deployment: Deployment, metadata: Any) -> None:
    """Answered, authz would tell valid keys from invalid ones and take their rate-limit
    permits and reserve their money: a key with a limit of 2 calls a minute shows it."""
    limited = deployment.stack.admin(
        "POST",
        "/admin/api-key/apply",
        json={"name": "limited", "month_quota": 0, "balance": 5, "rate_limit_rpm": 2},
    ).json()["data"]
    with authz_channel(deployment) as channel:
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
        answers = [
            check(forged_check(limited["api_key"], f"forged-check-{n}"), metadata=metadata, timeout=10)
            for n in range(3)
        ]

    for answer in answers:
        assert answer.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
        assert answer.WhichOneof("http_response") == "denied_response"
        assert answer.denied_response.status.code == 401
        assert "not trusted" in answer.denied_response.body
        assert not answer.denied_response.headers or all(
            not h.header.key.startswith("x-brproxy-") for h in answer.denied_response.headers
        )
    # The key's two permits of this minute and its money are untouched: two calls pass.
    with openai_sdk(deployment.stack, limited["api_key"]) as client:
        for _ in range(2):
            client.chat.completions.create(
                model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}]
            )


# --- health stays open, and tells nothing ------------------------------------------------------


def test_health_probes_stay_open_and_tell_nothing_more(deployment: Deployment) -> None:
    with direct(deployment, "translator") as translator:
        assert translator.get("/health").json() == {"status": "ok"}
    with direct(deployment, "meter") as meter:
        assert meter.get("/health").json() == {"status": "ok"}
    with direct(deployment, "admin") as admin_api:
        assert admin_api.get("/health").status_code == 200
    with authz_channel(deployment) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


# --- no other local user can reach a service, or take its place --------------------------------

# Run as uid 65534 for `seconds`: bind the TCP port (SO_REUSEADDR, as the services' own
# listeners had it) and the translator's socket path the moment either is free, and serve
# whatever arrives there; remove or connect to the translator's socket and the others. Reports
# what it got, as JSON, at the end.
_SQUATTER = r"""
import json, os, select, socket, sys, time
port, target, seconds, others = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4:]
report = {"tcp_bound": False, "unix_bound": False, "unlinked": False, "connected": [],
          "bind_errors": [], "unlink_errors": [], "connect_errors": [], "received": []}
def note(key, error):
    if error.errno not in report[key]:
        report[key].append(error.errno)
listeners = []
print("ready", flush=True)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if not report["tcp_bound"]:
        tcp = socket.socket()
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            tcp.bind(("127.0.0.1", port))
            tcp.listen(16)
            listeners.append(tcp)
            report["tcp_bound"] = True
        except OSError:
            tcp.close()
    if not report["unix_bound"]:
        unix = socket.socket(socket.AF_UNIX)
        try:
            unix.bind(target)
            unix.listen(16)
            listeners.append(unix)
            report["unix_bound"] = True
        except OSError as error:
            note("bind_errors", error)
            unix.close()
    try:
        os.unlink(target)
        report["unlinked"] = True
    except OSError as error:
        note("unlink_errors", error)
    for path in [target, *others]:
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
            report["connected"].append(path)
        except OSError as error:
            note("connect_errors", error)
        finally:
            probe.close()
    readable, _, _ = select.select(listeners, [], [], 0.005)
    for listener in readable:
        connection, _ = listener.accept()
        connection.settimeout(2)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                data += chunk
            connection.sendall(b"HTTP/1.1 503 Squatted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass
        connection.close()
        report["received"].append(data.decode("latin-1"))
print(json.dumps(report), flush=True)
"""


def service_process(deployment: Deployment, service: str) -> psutil.Process:
    stack = deployment.stack
    (process,) = [
        p for p in stack.processes(SERVICE_PROCESSES[service]) if p.parent().pid == stack.process.pid
    ]
    return process


def test_the_services_listen_on_sockets_only_their_owner_may_use_and_on_no_port(
    deployment: Deployment,
) -> None:
    need_root()
    for service in SERVICES:
        process = service_process(deployment, service)
        for member in [process, *process.children(recursive=True)]:  # uvicorn's workers too
            listening = [c for c in member.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
            assert listening == [], (service, listening)
    directory = deployment.socket_dir.lstat()
    assert stat.S_ISDIR(directory.st_mode) and directory.st_uid == os.geteuid()
    assert stat.S_IMODE(directory.st_mode) == 0o700
    for service in SERVICES:
        path = deployment.socket(service)
        assert stat.S_ISSOCK(path.lstat().st_mode), service
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, service
        # Another local user can neither reach it nor make a socket of their own in its place.
        assert connect_as_nobody(path) == f"errno {errno.EACCES}", service
    squatter = python_as_nobody(
        _SQUATTER, str(free_port()), str(deployment.socket("translator")), "0.2",
        *(str(deployment.socket(s)) for s in SERVICES),
    )  # fmt: skip
    out, err = squatter.communicate(timeout=30)
    report = json.loads(out.splitlines()[-1])
    assert not report["unix_bound"] and report["bind_errors"] == [errno.EACCES], err
    assert not report["unlinked"] and report["unlink_errors"] == [errno.EACCES]
    assert report["connected"] == [] and report["connect_errors"] == [errno.EACCES]
    # The services answer their owner there (the health checks through the edge do too).
    with direct(deployment, "meter") as meter:
        assert meter.get("/health").status_code == 200


def test_while_a_service_restarts_no_other_user_can_take_its_place(deployment: Deployment) -> None:
    """The port squat (issue 12's follow-up): the translator dies, and during the supervisor's
    restart delay another local user tries to take its socket, and the port it would have had
    on loopback, to receive what Envoy sends next (the caller's prompt, identity and the
    internal token). The next call still reaches the real, restarted translator."""
    need_root()
    stack = deployment.stack
    payer = stack.create_key("during-a-restart", month_quota=0, balance=5)
    translator = service_process(deployment, "translator")
    others = [str(deployment.socket(s)) for s in SERVICES if s != "translator"]
    squatter = python_as_nobody(
        _SQUATTER, str(deployment.ports["translator"]), str(deployment.socket("translator")), "8", *others
    )
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == "ready\n"
        translator.send_signal(signal.SIGKILL)
        translator.wait(10)
        time.sleep(0.1)  # within the supervisor's restart delay (0.5 s for a first death)
        with stack.client(payer["api_key"]) as client:
            answer = client.post(
                "/v1/chat/completions",
                json={"model": "claude-3-haiku", "messages": [{"role": "user", "content": PROMPT}]},
            )
        out, err = squatter.communicate(timeout=30)
    finally:
        if squatter.poll() is None:
            squatter.kill()
            squatter.communicate()
    report = json.loads(out.splitlines()[-1])

    received = report.pop("received")  # never shown: it would carry the token
    stolen, count = any(deployment.token in request for request in received), len(received)
    assert count == 0, f"another local user received {count} request(s) (the token among them: {stolen})"
    assert not report["unix_bound"] and report["bind_errors"] == [errno.EACCES], err
    assert not report["unlinked"] and report["connected"] == []
    assert report["connect_errors"] == [errno.EACCES]
    # The call was answered by the restarted translator, and billed once to its caller.
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"]
    assert service_process(deployment, "translator").pid != translator.pid
    assert any("translator killed by SIGKILL; restarting it in" in line for line in stack.output)
    rows = stack.wait_for("SELECT fee FROM threads WHERE key_id = $1", payer["id"])
    assert len(rows) == 1 and rows[0]["fee"] > 0


# --- Envoy's admin interface -------------------------------------------------------------------


def test_envoys_admin_interface_is_no_port_and_no_other_users_socket(deployment: Deployment) -> None:
    need_root()
    stack = deployment.stack
    (envoy,) = [p for p in stack.processes("envoy.json") if p.name() == "envoy"]
    public = int(stack.base_url.rsplit(":", 1)[1])
    listening = {c.laddr.port for c in envoy.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert listening == {public}  # no TCP admin port

    envoy_dir = stack.data_dir / "envoy"
    socket_path = envoy_dir / "admin.sock"
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)), base_url="http://envoy") as admin:
        assert admin.get("/ready").status_code == 200  # its owner is served

    assert connect_as_nobody(socket_path) == f"errno {errno.EACCES}"
    # Where the token is written, only its owner may look.
    assert stat.S_IMODE(envoy_dir.stat().st_mode) == 0o700
    for secret in (envoy_dir / "envoy.json", stack.data_dir / "internal-token"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        assert deployment.token in secret.read_text()


# --- through the edge -------------------------------------------------------------------------


def test_through_the_edge_everything_works_and_client_sent_internal_headers_are_ignored(
    deployment: Deployment,
) -> None:
    stack = deployment.stack
    payer = stack.create_key("payer", month_quota=0, balance=5)
    forged = {
        INTERNAL_TOKEN: WRONG_TOKEN,
        KEY_ID: str(deployment.victim["id"]),
        KEY_ROLE: "bootstrap",
        "x-brproxy-admitted": "999999999",
    }
    victim_before = deployment.money(), deployment.threads()
    with openai_sdk(stack, payer["api_key"]) as client:
        answer = client.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": PROMPT}], extra_headers=forged
        )
    assert answer.choices[0].message.content

    rows = stack.wait_for("SELECT fee FROM threads WHERE key_id = $1", payer["id"])
    assert len(rows) == 1 and rows[0]["fee"] > 0  # billed to the caller's key
    assert (deployment.money(), deployment.threads()) == victim_before
    (payer_row,) = stack.sql("SELECT balance FROM api_keys WHERE id = $1", payer["id"])
    assert payer_row["balance"] < Decimal(5)

    # The admin API through the edge: the bootstrap key still creates keys.
    assert stack.create_key("made-through-the-edge")["id"] > 0


def test_refusals_are_logged_once_each_without_any_token(deployment: Deployment) -> None:
    stack = deployment.stack
    with direct(deployment, "meter") as meter:
        meter.post("/events", headers={"x-request-id": "logged-once", INTERNAL_TOKEN: WRONG_TOKEN}, json={})
    deadline = time.monotonic() + 5
    while not any("'logged-once'" in line for line in stack.output) and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in stack.output if "'logged-once'" in line]
    assert len(lines) == 1, lines
    assert "wrong internal token" in lines[0] and "/events" in lines[0]
    output = "".join(stack.output)
    assert deployment.token not in output
    assert WRONG_TOKEN not in output
    # Never on a command line either: the services have it in their environment.
    assert not [line for line in stack.command_lines() if deployment.token in line]
    (meter_process,) = [p for p in stack.processes("-m meter") if p.parent().pid == stack.process.pid]
    assert meter_process.environ()["BRPROXY_INTERNAL_TOKEN"] == deployment.token
