"""``python -m bedrock_simulator``: serve the simulator with uvicorn.

Every option defaults to an environment variable ``BRPROXY_SIM_<NAME>`` so supervisors can
configure it without a command line (and keep the secret out of ``ps``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import uvicorn

from core.asgi_serving import CoalescingHttpToolsProtocol
from core.heap import freeze_startup_heap

from .config import SimulatorConfig
from .server import DroppedConnection, create_app

_ENV_PREFIX = "BRPROXY_SIM_"


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(_ENV_PREFIX + name)
    return value if value not in (None, "") else default


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bedrock_simulator",
        description=(
            "Local Bedrock Runtime simulator (Converse, ConverseStream, InvokeModel, "
            "InvokeModelWithResponseStream, CountTokens). Makes no AWS calls."
        ),
    )
    parser.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("PORT", "18872") or 18872))
    parser.add_argument(
        "--latency-ms",
        type=_non_negative_float,
        default=_non_negative_float(_env("LATENCY_MS", "0") or "0"),
        help="time to first byte of every answer",
    )
    parser.add_argument(
        "--tokens-per-second",
        type=_non_negative_float,
        default=_non_negative_float(_env("TOKENS_PER_SECOND", "0") or "0"),
        help="output pace; 0 = unlimited",
    )
    parser.add_argument(
        "--output-tokens",
        type=_positive_int,
        default=_positive_int(_env("OUTPUT_TOKENS", "16") or "16"),
        help="output tokens when the prompt does not ask for a number",
    )
    parser.add_argument("--access-key-id", default=_env("ACCESS_KEY_ID"))
    parser.add_argument(
        "--secret-access-key",
        default=_env("SECRET_ACCESS_KEY"),
        help="verify SigV4 signatures with this secret (prefer BRPROXY_SIM_SECRET_ACCESS_KEY)",
    )
    parser.add_argument("--region", default=_env("REGION"), help="if set, signatures must be scoped to it")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    config = SimulatorConfig(
        latency_ms=args.latency_ms,
        tokens_per_second=args.tokens_per_second,
        output_tokens=args.output_tokens,
        access_key_id=args.access_key_id,
        secret_access_key=args.secret_access_key,
        region=args.region,
    )
    auth = "SigV4 signatures verified" if config.secret_access_key else "SigV4 form checked only"
    # Said loudly so nobody mistakes benchmark or test numbers for real Bedrock ones.
    print(
        f"Bedrock SIMULATOR listening on http://{args.host}:{args.port}: no AWS calls are made ({auth})",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn reports an app's exception with a traceback; a connection dropped on purpose
    # (the disconnect_after directive) is not an error of the simulator's.
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))
    )
    freeze_startup_heap()  # the simulator stands in for a remote service: no GC stalls of its own
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        loop="uvloop",
        # Writes made in one event-loop turn leave in one send(): an unpaced stream's frames
        # go out together, as a remote Bedrock's would arrive in one read after a network hop.
        http=CoalescingHttpToolsProtocol,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # only Envoy talks to it; X-Forwarded-* is not for us to trust
        server_header=False,
        lifespan="off",
        # As Bedrock, keep idle connections longer than clients do (the translator drops its
        # own after 20 s), so a client never sends a request into a connection being closed.
        timeout_keep_alive=75,
    )


if __name__ == "__main__":
    main()
