"""The `brproxy` command."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from brproxy.supervisor import StackOptions, run

__all__ = ["main"]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="brproxy", description="Self-hosted gateway to AWS Bedrock.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the whole stack on this machine")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("BRPROXY_DATA_DIR", ".brproxy")),
        help="embedded database, certificates, spool files (default ./.brproxy)",
    )
    up.add_argument(
        "--host",
        default=os.environ.get("BRPROXY_HOST", "127.0.0.1"),
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for the network)",
    )
    up.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("BRPROXY_PORT", "8866")),
        help="port to listen on (default 8866)",
    )
    up.add_argument(
        "--tls-cert",
        type=Path,
        default=_env_path("BRPROXY_TLS_CERT"),
        help="PEM certificate chain (default: a self-signed one, generated)",
    )
    up.add_argument("--tls-key", type=Path, default=_env_path("BRPROXY_TLS_KEY"), help="PEM private key")
    up.add_argument(
        "--plain-http",
        action="store_true",
        default=os.environ.get("BRPROXY_PLAIN_HTTP", "") in ("1", "true"),
        help="serve plain HTTP (only behind another TLS terminator)",
    )
    up.add_argument(
        "--bedrock-simulator",
        action="store_true",
        help="answer with a local Bedrock simulator instead of AWS (no AWS credentials needed)",
    )
    up.add_argument("--simulator-latency-ms", type=int, default=0, help=argparse.SUPPRESS)
    up.add_argument("--simulator-tokens-per-second", type=float, default=0.0, help=argparse.SUPPRESS)
    up.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("BRPROXY_WORKERS", "1")),
        help="worker processes for the translator and admin API (default 1)",
    )
    migrate = commands.add_parser("migrate", help="apply database migrations to DATABASE_URL and exit")
    migrate.set_defaults(command="migrate")
    return parser


def _migrate() -> None:
    import asyncio

    from core.migrate import apply_migrations
    from core.settings import Settings

    url = Settings().require_database_url()
    applied = asyncio.run(apply_migrations(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "migrate":
        _migrate()
        return
    if args.command == "up":
        if (args.tls_cert is None) != (args.tls_key is None):
            sys.exit("brproxy: --tls-cert and --tls-key go together")
        options = StackOptions(
            data_dir=args.data_dir.resolve(),
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert.resolve() if args.tls_cert else None,
            tls_key=args.tls_key.resolve() if args.tls_key else None,
            plain_http=args.plain_http,
            bedrock_simulator=args.bedrock_simulator,
            workers=max(1, args.workers),
            simulator_latency_ms=args.simulator_latency_ms,
            simulator_tokens_per_second=args.simulator_tokens_per_second,
        )
        sys.exit(run(options))
