"""The deployment files are valid for the tools that will read them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_kubernetes_manifest_validates_offline(manifest: Path) -> None:
    import kubernetes_validate

    for document in yaml.safe_load_all(manifest.read_text()):
        kubernetes_validate.validate(document, "1.30", strict=True)


def test_every_service_module_has_a_deployment() -> None:
    commands = " ".join(m.read_text() for m in MANIFESTS)
    for module in ("authz", "translator", "meter", "admin_api", "edge"):
        assert f'"-m", "{module}"' in commands


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) ", dockerfile, re.MULTILINE))
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "bench")}
    assert packages <= copied


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_file_validates() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        env={"ADMIN_API_KEY": "x", "BRPROXY_INTERNAL_TOKEN": "0" * 64, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services_match_the_stack() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"postgres", "migrate", "authz", "meter", "translator", "admin-api", "edge"} <= set(
        compose["services"]
    )
    assert compose["services"]["edge"]["ports"] == ["8866:8866"]


def _documents(kind: str) -> list[dict[str, Any]]:
    return [
        document
        for manifest in MANIFESTS
        for document in yaml.safe_load_all(manifest.read_text())
        if document and document["kind"] == kind
    ]


def test_only_the_edge_reaches_the_services_that_trust_its_headers() -> None:
    pods = {
        d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]
        for d in _documents("Deployment")
    }
    policies = {
        p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: p["spec"]
        for p in _documents("NetworkPolicy")
    }
    allowed = {
        component: {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            for rule in spec["ingress"]
            for peer in rule["from"]
        }
        for component, spec in policies.items()
    }
    assert allowed == {
        "authz": {"edge", "admin-api"},
        "translator": {"edge", "admin-api"},
        "meter": {"translator", "admin-api"},
        "admin-api": {"edge"},
    }
    for component, spec in policies.items():
        # Each policy opens exactly the port its pods listen on, for pods that exist.
        (container,) = pods[component]["spec"]["containers"]
        listening = {port["containerPort"] for port in container["ports"]}
        opened = {port["port"] for rule in spec["ingress"] for port in rule["ports"]}
        assert opened == listening
        assert allowed[component] <= set(pods)


def test_every_service_and_the_edge_get_the_internal_token_from_the_secret() -> None:
    """Each service refuses requests without BRPROXY_INTERNAL_TOKEN and Envoy adds it; a pod
    without it would not start (or, the edge, not be trusted)."""
    (secret,) = _documents("Secret")
    assert "BRPROXY_INTERNAL_TOKEN" in secret["stringData"]
    for deployment in _documents("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        whole_secret = {"secretRef": {"name": secret["metadata"]["name"]}} in container.get("envFrom", [])
        one_key = {
            "name": "BRPROXY_INTERNAL_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": secret["metadata"]["name"], "key": "BRPROXY_INTERNAL_TOKEN"}
            },
        } in container.get("env", [])
        assert whole_secret or one_key, deployment["metadata"]["name"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("authz", "meter", "translator", "admin-api", "edge"):
        assert "BRPROXY_INTERNAL_TOKEN" in compose["services"][name]["environment"], name
