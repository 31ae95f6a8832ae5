"""The admission rule for money: monthly quota first, then balance (pure; no I/O).

A key's `month_fee` belongs to the calendar month stored beside it (`fee_month`, in the
configured billing time zone). When the current month differs, this month's fee is zero,
whatever else happened to the row: an admin edit does not hide a month change.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

__all__ = ["billing_month", "effective_month_fee", "headroom", "is_out_of_money", "spends_money"]


def billing_month(tz: str, now: dt.datetime | None = None) -> dt.date:
    """First day of the current calendar month in time zone `tz`."""
    moment = now or dt.datetime.now(dt.UTC)
    local = moment.astimezone(ZoneInfo(tz))
    return dt.date(local.year, local.month, 1)


def spends_money(method: str, path: str) -> bool:
    """Whether a request calls a paid Bedrock operation (listing models, counting tokens are free)."""
    return method == "POST" and path.startswith("/v1/") and not path.startswith("/v1/messages/count_tokens")


def headroom(
    month_quota: Decimal, month_fee: Decimal, fee_month: dt.date, balance: Decimal, current_month: dt.date
) -> Decimal:
    """What a key may still spend: what is left of this month's quota, plus its balance."""
    left_of_quota = max(month_quota - effective_month_fee(month_fee, fee_month, current_month), Decimal(0))
    return left_of_quota + balance


def effective_month_fee(month_fee: Decimal, fee_month: dt.date, current_month: dt.date) -> Decimal:
    """This month's spend: the stored month fee if it belongs to this month, else zero."""
    return month_fee if fee_month == current_month else Decimal(0)


def is_out_of_money(
    month_quota: Decimal,
    month_fee: Decimal,
    fee_month: dt.date,
    balance: Decimal,
    current_month: dt.date,
    reserved: Decimal = Decimal(0),
) -> bool:
    """True when the monthly quota is used up and the balance is not positive.

    `reserved` is spend already committed to requests in flight (not yet billed).
    """
    billed = effective_month_fee(month_fee, fee_month, current_month)
    remaining_quota = max(month_quota - billed, Decimal(0))
    if reserved < remaining_quota:
        return False
    # Billed spend beyond the quota has already come out of the balance; reserved spend
    # beyond what is left of the quota will.
    return balance - (reserved - remaining_quota) <= 0
