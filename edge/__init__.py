"""edge: the Envoy in front of everything (TLS, ext_authz, routing), configured from Settings."""

from edge.envoy_config import EdgeConfig, build_bootstrap, render

__all__ = ["EdgeConfig", "build_bootstrap", "render"]
