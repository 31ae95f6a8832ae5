"""authz: Envoy's ext_authz service. Checks key, role, quota and balance from memory."""

from authz.decision import Allow, Decision, Deny, KeyRecord, decide

__all__ = ["Allow", "Decision", "Deny", "KeyRecord", "decide"]
