"""The certificate `brproxy up` generates, trusted the ways the README says, against a real stack.

Each client trusts the generated file only: Python's ssl (httpx, the OpenAI SDK, the Anthropic
SDK on httpx2, with `ssl.create_default_context(cafile=...)`), curl `--cacert`, and Node.js
with `NODE_EXTRA_CA_CERTS` (how Claude Code is told to trust it). Through Envoy they reach the
stack by name and by address; and each of them refuses a certificate signed with the generated
key, as whoever got hold of the key (it leaked) would make to impersonate another host, or
this one from another machine.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
from certificates import self_signed, served_certificate, signed_with, tls_server, write_pair
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from stack_process import Stack, start_stack, stop_stack

pytestmark = pytest.mark.e2e

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="Node.js (`node`) is not installed: Claude Code's trust path untested"
)
HAIKU_45 = "claude-haiku-4-5-20251001"
FORGED_HOST = "api.anthropic.com"
MODELS = b'{"object": "list", "data": [], "has_more": false, "first_id": null, "last_id": null}'
IMPOSTOR_ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s"
    % (len(MODELS), MODELS)
)
"""What the impostor answers every request with: like GET /v1/models."""

# One HTTPS GET with Node's own TLS stack; prints {"status", "body"} or {"error", "message"}.
NODE_GET = """
const https = require("https");
const options = {host: process.env.DIAL, port: Number(process.env.PORT), path: process.env.REQUEST_PATH,
                 headers: {authorization: "Bearer " + (process.env.TOKEN || "")}};
if (process.env.SERVERNAME) options.servername = process.env.SERVERNAME;
https.get(options, (response) => {
  let body = "";
  response.on("data", (chunk) => (body += chunk));
  response.on("end", () => console.log(JSON.stringify({status: response.statusCode, body})));
}).on("error", (error) => console.log(JSON.stringify({error: error.code, message: error.message})));
"""


def _quiet_env() -> dict[str, str]:
    """This environment without proxies or extra CAs: only what a test passes is trusted."""
    skip = {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE"}
    return {k: v for k, v in os.environ.items() if k not in skip and not k.lower().endswith("_proxy")}


def _node_get(
    trusted: Path | None, dial: str, port: int, path: str, token: str = "", servername: str = ""
) -> dict[str, Any]:
    assert NODE is not None
    env = _quiet_env() | {"DIAL": dial, "PORT": str(port), "REQUEST_PATH": path, "TOKEN": token}
    env["SERVERNAME"] = servername
    if trusted is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(trusted)
    result = subprocess.run([NODE, "-e", NODE_GET], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _curl(trusted: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--cacert", str(trusted), "-o", "/dev/null", "-w", "%{http_code}",
         *extra, url],
        env=_quiet_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _trusting(cert: Path) -> ssl.SSLContext:
    """The README's way: a context trusting the generated file only (not the system's CAs)."""
    return ssl.create_default_context(cafile=str(cert))


def _port(stack: Stack) -> int:
    return int(stack.base_url.rsplit(":", 1)[1])


def _is_ca(certificate: x509.Certificate) -> bool:
    return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)


def _openai_trusting(cert: Path, base_url: str, key: str) -> openai.OpenAI:
    http = httpx.Client(verify=_trusting(cert), trust_env=False, timeout=30)
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, http_client=http)


def _anthropic_trusting(cert: Path, base_url: str, key: str) -> anthropic.Anthropic:
    http = httpx2.Client(verify=_trusting(cert), trust_env=False, timeout=30)
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, http_client=http)


@needs_node
def test_clients_trusting_only_the_generated_certificate_reach_the_stack(stack: Stack) -> None:
    assert stack.cert is not None
    cert, port = stack.cert, _port(stack)
    served = served_certificate(port)
    assert served == x509.load_pem_x509_certificate(cert.read_bytes())
    assert not _is_ca(served)
    key = stack.create_key("trusts-the-generated-certificate", balance=1)["api_key"]
    for host in ("localhost", "127.0.0.1"):  # hostname checking on: both are named
        base = f"https://{host}:{port}"
        with httpx.Client(verify=_trusting(cert), trust_env=False) as client:
            assert client.get(f"{base}/health").status_code == 200
        with _openai_trusting(cert, f"{base}/v1", key) as sdk:
            reply = sdk.chat.completions.create(
                model="claude-3-haiku", messages=[{"role": "user", "content": "hi [[sim:tokens=7]]"}]
            )
        assert (reply.choices[0].message.content or "").startswith("Simulated answer to: hi")
        with _anthropic_trusting(cert, base, key) as claude:
            message = claude.messages.create(
                model=HAIKU_45, max_tokens=50, messages=[{"role": "user", "content": "hi [[sim:tokens=7]]"}]
            )
        assert message.content[0].type == "text" and message.content[0].text.startswith("Simulated answer")
        curl = _curl(cert, f"{base}/health")
        assert (curl.returncode, curl.stdout) == (0, "200"), curl.stderr
        node = _node_get(cert, host, port, "/v1/models", key)
        assert node.get("status") == 200, node
        assert any(model["id"] == "claude-3-haiku" for model in json.loads(node["body"])["data"])
    # Without NODE_EXTRA_CA_CERTS Node refuses it: the variable is what makes Claude Code trust it.
    assert _node_get(None, "localhost", port, "/health")["error"] == "DEPTH_ZERO_SELF_SIGNED_CERT"


def _refusal(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate verification failure behind a client's exception, if that is what it was."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, ssl.SSLCertVerificationError):
        seen = seen.__cause__ or seen.__context__
    return seen


@needs_node
def test_clients_trusting_it_refuse_a_certificate_signed_with_its_key(stack: Stack, tmp_path: Path) -> None:
    """The key leaked: its holder signs a certificate naming another host and this one (by name
    and by address), with a key of their own, and serves it. Every client trusting the generated
    certificate refuses it: the generated certificate is no certificate authority."""
    assert stack.cert is not None
    generated = x509.load_pem_x509_certificate(stack.cert.read_bytes())
    generated_key = serialization.load_pem_private_key(
        (stack.data_dir / "tls" / "brproxy-selfsigned.key").read_bytes(), password=None
    )
    assert isinstance(generated_key, ec.EllipticCurvePrivateKey)
    names = [
        x509.DNSName(FORGED_HOST),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    forged = write_pair(tmp_path / "forged", *signed_with(generated, generated_key, FORGED_HOST, names))
    trusted = stack.cert
    with tls_server(*forged, answer=IMPOSTOR_ANSWER) as port:
        with (
            pytest.raises(ssl.SSLCertVerificationError) as python,
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            _trusting(trusted).wrap_socket(raw, server_hostname=FORGED_HOST),
        ):
            pass
        assert python.value.verify_message == "invalid CA certificate"

        sdks = [
            (
                openai.APIConnectionError,
                _openai_trusting(trusted, f"https://127.0.0.1:{port}/v1", "br-anything"),
            ),
            (
                anthropic.APIConnectionError,
                _anthropic_trusting(trusted, f"https://localhost:{port}", "br-anything"),
            ),
        ]
        for error, sdk in sdks:
            with pytest.raises(error) as sdk_error, sdk:
                sdk.models.list()
            refusal = _refusal(sdk_error.value)
            assert refusal is not None and refusal.verify_message == "invalid CA certificate", sdk_error.value

        curl = _curl(
            trusted, f"https://{FORGED_HOST}:{port}/", "--resolve", f"{FORGED_HOST}:{port}:127.0.0.1"
        )
        assert curl.returncode == 60 and "invalid CA certificate" in curl.stderr, (
            curl.returncode,
            curl.stderr,
        )

        # Node reports the check that fails first in its order: the key may not sign certificates.
        refused = {"error": "UNSPECIFIED", "message": "key usage does not include certificate signing"}
        assert _node_get(trusted, "127.0.0.1", port, "/", servername=FORGED_HOST) == refused
        assert _node_get(trusted, "localhost", port, "/v1/models") == refused


def test_a_data_dir_with_the_old_certificate_authority_gets_a_leaf_and_says_so(
    tmp_path: Path, database_url: str
) -> None:
    data_dir = tmp_path / "data"
    # The certificate earlier versions generated: self-signed, CA:TRUE, ten years.
    old, old_key = self_signed(
        ca=True, lifetime=dt.timedelta(days=3650, minutes=5), ends_in=dt.timedelta(days=3650)
    )
    write_pair(data_dir / "tls", old, old_key)
    stack = start_stack(data_dir, database_url)
    try:
        cert = (data_dir / "tls" / "brproxy-selfsigned.crt").resolve()
        assert stack.cert == cert
        notices = [line for line in stack.output if "TLS certificate changed" in line]
        assert notices == [
            "The generated TLS certificate changed (the old one was a certificate authority, able to sign "
            f"certificates for any host): trust the new one on your clients again: {cert}\n"
        ]
        assert not any("Generated a self-signed" in line for line in stack.output)
        served = served_certificate(_port(stack))
        assert served != old and not _is_ca(served)
        assert served == x509.load_pem_x509_certificate(cert.read_bytes())
        with httpx.Client(verify=_trusting(cert), trust_env=False) as client:
            assert client.get(f"https://localhost:{_port(stack)}/health").status_code == 200
    finally:
        assert not stop_stack(stack)
