"""Following a Postgres NOTIFY channel for as long as a process lives.

authz's key cache, its budget store and every catalogue follower do the same thing: connect,
LISTEN, run a session on the connection (load a snapshot, re-load on a timer…), and when the
connection is lost, reconnect with backoff and start the session again. The session runs
*after* the subscription, so a change made while it loads a snapshot is either in the
snapshot or arrives as a notification afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

__all__ = ["follow_channel", "until_closed"]

Listener = Callable[[Any, int, str, str], None]
Session = Callable[[asyncpg.Connection], Awaitable[None]]


async def until_closed(connection: asyncpg.Connection) -> None:
    """A session that only listens: returns when the connection is lost."""
    closed = asyncio.Event()
    connection.add_termination_listener(lambda _connection: closed.set())
    await closed.wait()


async def follow_channel(
    database_url: str,
    channel: str,
    listener: Listener,
    session: Session = until_closed,
    *,
    log: logging.Logger,
    what: str,
    stopping: Callable[[], bool] = lambda: False,
) -> None:
    """LISTEN on `channel` and run `session`, reconnecting with backoff, until `stopping()`."""
    backoff = 0.2
    while not stopping():
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(database_url, timeout=5)
            await connection.add_listener(channel, listener)
            backoff = 0.2
            await session(connection)
        except (TimeoutError, OSError, asyncpg.PostgresError) as error:
            log.warning("%s lost the database (%s); retrying in %.1fs", what, type(error).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            if connection is not None and not connection.is_closed():
                await connection.close()
