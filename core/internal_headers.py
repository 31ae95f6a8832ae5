"""Headers Envoy adds after authz admits a request, naming the caller to the upstream.

Envoy strips every header with the `x-brproxy-` prefix from incoming requests before authz
runs, so an upstream can trust these: only authz can have set them.
"""

from __future__ import annotations

__all__ = ["INTERNAL_PREFIX", "KEY_ID", "KEY_ROLE", "ROLE_BOOTSTRAP"]

INTERNAL_PREFIX = "x-brproxy-"
KEY_ID = "x-brproxy-key-id"
"""The numeric id of the caller's key (0 for the bootstrap admin key)."""
KEY_ROLE = "x-brproxy-key-role"
"""`user`, `admin`, or `bootstrap` (the ADMIN_API_KEY pseudo-admin)."""
ROLE_BOOTSTRAP = "bootstrap"
