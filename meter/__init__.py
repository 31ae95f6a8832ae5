"""meter: records usage events to Postgres: threads, sessions, spend and balances."""

from meter.billing import ThreadRow, price_event
from meter.recorder import record_batch

__all__ = ["ThreadRow", "price_event", "record_batch"]
