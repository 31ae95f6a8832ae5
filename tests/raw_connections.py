"""Client connections opened and driven by hand, as floods and slow clients do, to see what the
edge closes and when: used against a lone Envoy (tests/edge) and a whole stack (tests/e2e)."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def held_open(connect: Callable[[], socket.socket], count: int) -> Iterator[list[socket.socket]]:
    """`count` connections, each made by `connect()`, all closed afterwards."""
    with contextlib.ExitStack() as opened:
        yield [opened.enter_context(connect()) for _ in range(count)]


def closed_by_the_edge(connections: list[socket.socket], within: float) -> list[socket.socket]:
    """The connections the edge closes within `within` seconds (it never writes to these)."""
    closed: list[socket.socket] = []
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        waiting = [c for c in connections if c not in closed]
        if not waiting:
            break
        readable, _, _ = select.select(waiting, [], [], left)
        for connection in readable:
            try:
                data = connection.recv(1)
            except (ConnectionResetError, ssl.SSLError):  # a reset is a close too
                data = b""
            assert data == b"", "the edge wrote to a connection that sent nothing"
            closed.append(connection)
    return closed


def trickle(
    connection: socket.socket, piece: Callable[[int], bytes], *, every: float, within: float
) -> tuple[bytes, float]:
    """Sends `piece(0)`, `piece(1)`, … one every `every` seconds until the edge answers, reading
    what it answers until it closes the connection (or `within` seconds pass).

    Returns the answer and the seconds until the connection was closed (or given up on).
    """
    started, answer = time.monotonic(), b""
    connection.settimeout(every)
    number = 0
    while time.monotonic() - started < within:
        try:
            if not answer:  # answered: the request is over, only its end is awaited
                connection.sendall(piece(number))
                number += 1
            chunk = connection.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            continue
        except OSError:  # reset, broken pipe, a TLS error: closed all the same
            break
        if not chunk:
            break
        answer += chunk
    return answer, time.monotonic() - started
