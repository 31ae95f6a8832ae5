"""The official SDK clients pointed at a running stack, and the threads the meter wrote for them.

Named uniquely (test folders have no `__init__.py`, so every test module shares one namespace).
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
from stack_process import Stack


def openai_sdk(stack: Stack, key: str) -> openai.OpenAI:
    """OpenAI's SDK on the stack's /v1, no retries (close it, or use it as a context manager)."""
    return openai.OpenAI(
        base_url=stack.base_url + "/v1",
        api_key=key,
        http_client=httpx.Client(verify=stack.verify, timeout=30),
        max_retries=0,
    )


def async_openai_sdk(stack: Stack, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=stack.base_url + "/v1",
        api_key=key,
        http_client=httpx.AsyncClient(verify=stack.verify, timeout=30),
        max_retries=0,
    )


def session_thread(stack: Stack, session: str) -> Any:
    """The one thread recorded for a client session id (usage is recorded asynchronously)."""
    rows = stack.wait_for(
        "SELECT t.* FROM threads t JOIN sessions s ON s.id = t.session_id WHERE s.client_session_id = $1",
        session,
    )
    assert len(rows) == 1, rows
    return rows[0]
