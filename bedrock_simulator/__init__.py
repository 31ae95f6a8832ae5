"""A local stand-in for the AWS Bedrock Runtime API that speaks Bedrock's real wire protocol.

Clients (boto3, the gateway's translator) point their endpoint URL at it and sign as for AWS;
no call ever leaves the machine. Run it with ``python -m bedrock_simulator``; see
``responses`` for what it answers and the ``[[sim: ...]]`` directives tests use to steer it.
"""

from .config import SimulatorConfig
from .eventstream import encode_event_message, encode_exception_message
from .server import create_app

__all__ = ["SimulatorConfig", "create_app", "encode_event_message", "encode_exception_message"]
