"""The `brproxy` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from brproxy.supervisor import StackOptions, run
from core.settings import Settings, settings_problems

__all__ = ["main"]


def _parser(settings: Settings) -> argparse.ArgumentParser:
    """The command line; each option's default is its setting from the environment (BRPROXY_*)."""
    parser = argparse.ArgumentParser(prog="brproxy", description="Self-hosted gateway to AWS Bedrock.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the whole stack on this machine")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data_dir,
        help="embedded database, certificates, spool files (default ./.brproxy)",
    )
    up.add_argument(
        "--host",
        default=settings.host,
        help="address to listen on (default 127.0.0.1; 0.0.0.0 for the network)",
    )
    up.add_argument("--port", type=int, default=settings.port, help="port to listen on (default 8866)")
    up.add_argument(
        "--tls-cert",
        type=Path,
        default=settings.tls_cert,
        help="PEM certificate chain (default: a self-signed one, generated)",
    )
    up.add_argument("--tls-key", type=Path, default=settings.tls_key, help="PEM private key")
    up.add_argument(
        "--plain-http",
        action="store_true",
        default=settings.plain_http,
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
        default=settings.workers,
        help="worker processes for the translator and admin API (default 1)",
    )
    migrate = commands.add_parser("migrate", help="apply database migrations to DATABASE_URL and exit")
    migrate.set_defaults(command="migrate")
    return parser


def _checked_settings() -> Settings:
    """The settings from the environment, or exit 2 naming each invalid one."""
    try:
        return Settings()
    except ValidationError as error:
        sys.stderr.write("brproxy: invalid configuration:\n")
        sys.stderr.writelines(f"  {line}\n" for line in settings_problems(error))
        sys.exit(2)


def _migrate(settings: Settings) -> None:
    import asyncio

    from core.migrate import apply_migrations

    url = settings.require_database_url()
    applied = asyncio.run(apply_migrations(url))
    print("applied: " + (", ".join(applied) if applied else "nothing (schema is current)"))


def main(argv: list[str] | None = None) -> None:
    # Every service reads the same environment: an invalid setting is refused here, once,
    # before anything starts.
    settings = _checked_settings()
    args = _parser(settings).parse_args(argv)
    if args.command == "migrate":
        _migrate(settings)
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
