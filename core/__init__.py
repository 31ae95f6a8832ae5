"""BRProxy's shared foundation: settings, schema and migrations, keys, catalogue, money rules.

`core` imports no service; every service imports only `core` (checked by import-linter).
Import what you need from its modules, e.g. `from core.settings import Settings`.
"""

__all__ = [
    "admission",
    "api_keys",
    "asgi_serving",
    "catalogue",
    "catalogue_store",
    "errors",
    "heap",
    "internal_auth",
    "internal_headers",
    "migrate",
    "pg_listen",
    "postgres_text",
    "pricing",
    "quota",
    "service_logging",
    "settings",
    "unix_sockets",
    "usage",
]
