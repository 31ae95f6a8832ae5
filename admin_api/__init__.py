"""BRProxy's admin and user REST API (the contract BRProxyManager speaks), behind Envoy."""

from __future__ import annotations

from admin_api.app import create_app

__all__ = ["create_app"]
