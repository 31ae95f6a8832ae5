"""Headers Envoy adds to what it sends the services behind it.

Envoy strips every header with the `x-brproxy-` prefix from incoming requests before authz
runs, so an upstream can trust these: only the edge can have set them. A service tells a
request that came through the edge by `INTERNAL_TOKEN` (see core/internal_auth.py): without
it, these headers could come from anyone who can reach the service.
"""

from __future__ import annotations

__all__ = ["ADMITTED", "INTERNAL_PREFIX", "INTERNAL_TOKEN", "KEY_ID", "KEY_ROLE", "ROLE_BOOTSTRAP"]

INTERNAL_PREFIX = "x-brproxy-"
KEY_ID = "x-brproxy-key-id"
"""The numeric id of the caller's key (0 for the bootstrap admin key)."""
KEY_ROLE = "x-brproxy-key-role"
"""`user`, `admin`, or `bootstrap` (the ADMIN_API_KEY pseudo-admin)."""
ROLE_BOOTSTRAP = "bootstrap"
ADMITTED = "x-brproxy-admitted"
"""On a model call: what authz reserved it for (`core.admission.Admission.header_value`); the
translator refuses a call that would exceed it."""
INTERNAL_TOKEN = "x-brproxy-internal-token"  # noqa: S105 - the header's name, not a secret
"""The deployment's internal secret, proving the request came through the edge."""
