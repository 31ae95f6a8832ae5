"""One router per resource; `routers` is what the app mounts, in this order."""

from __future__ import annotations

from fastapi import APIRouter

from admin_api.routes import health, keys, models, payments, sessions, statistics, threads, user

__all__ = ["routers"]

routers: tuple[APIRouter, ...] = (
    keys.router,
    models.router,
    payments.router,
    sessions.router,
    threads.router,
    statistics.router,
    user.router,
    health.router,
)
