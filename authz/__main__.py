"""`python -m authz`: the ext_authz gRPC service Envoy asks about every request."""

from authz.server import serve
from core.service_logging import configure_logging
from core.settings import Settings

if __name__ == "__main__":
    settings = Settings()
    configure_logging("authz", settings.log_level)
    serve(settings)
