"""Request bodies of the admin API (pydantic), with money parsed exactly.

Money arrives as a JSON number or a numeric string (the manager sends either) and becomes a
`Decimal` without passing through binary floating point: a JSON float is read back from its
shortest repr (`Decimal(str(0.1)) == Decimal("0.1")`). Unknown fields are ignored so the
original manager's forms keep working.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from admin_api.deps import MAX_BIGINT

__all__ = [
    "ApplyKeyRequest",
    "NonNegativeMoney",
    "PositiveMoney",
    "RechargeRequest",
    "UpdateKeyRequest",
]

_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Bounds that keep every accepted amount storable in Postgres `numeric` and sensible as money;
# beyond them the request is bad input (400), not a database error (500).
_MAX_INTEGER_DIGITS = 15
_MAX_DECIMAL_PLACES = 30


def _parse_money(value: Any) -> Decimal:
    if isinstance(value, bool):  # bool is an int subclass; `true` is not an amount
        raise PydanticCustomError("money_type", "must be a number or a numeric string")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(str(value))
    elif isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        amount = Decimal(value.strip())
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise PydanticCustomError("money_type", "must be a number or a numeric string")
    if not amount.is_finite():
        raise PydanticCustomError("money_finite", "must be a finite number")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, so never 'n'/'N'/'F'
    if (amount != 0 and amount.adjusted() >= _MAX_INTEGER_DIGITS) or exponent < -_MAX_DECIMAL_PLACES:
        raise PydanticCustomError(
            "money_range",
            "must be below 1e{digits} with at most {places} decimal places",
            {"digits": _MAX_INTEGER_DIGITS, "places": _MAX_DECIMAL_PLACES},
        )
    return amount


def _non_negative(amount: Decimal) -> Decimal:
    if amount < 0:
        raise PydanticCustomError("money_negative", "must not be negative")
    return amount


def _positive(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise PydanticCustomError("money_not_positive", "must be greater than 0")
    return amount


NonNegativeMoney = Annotated[Decimal, BeforeValidator(_parse_money), AfterValidator(_non_negative)]
PositiveMoney = Annotated[Decimal, BeforeValidator(_parse_money), AfterValidator(_positive)]

KeyId = Annotated[int, Field(ge=1, le=MAX_BIGINT)]
GroupId = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]  # the column is a Postgres integer
Name = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320)]
Role = Literal["user", "admin"]
RateLimit = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""Requests per minute across all replicas; 0 means no limit."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class ApplyKeyRequest(_Request):
    """`POST /admin/api-key/apply`; null in an optional field means its default."""

    name: Name
    group_id: GroupId | None = None
    role: Role | None = None
    email: Email | None = None
    month_quota: NonNegativeMoney | None = None
    balance: NonNegativeMoney | None = None
    rate_limit_rpm: RateLimit | None = None


class UpdateKeyRequest(_Request):
    """`POST /admin/api-key/update`; an absent or null field is left unchanged."""

    id: KeyId
    name: Name | None = None
    role: Role | None = None
    group_id: GroupId | None = None
    month_quota: NonNegativeMoney | None = None
    email: Email | None = None
    disabled: bool | None = None
    rate_limit_rpm: RateLimit | None = None


class RechargeRequest(_Request):
    """`POST /admin/api-key/recharge`: the key by its plain value or id (if both, both must match)."""

    api_key: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    id: KeyId | None = None
    balance: PositiveMoney

    @model_validator(mode="after")
    def _names_a_key(self) -> RechargeRequest:
        if self.api_key is None and self.id is None:
            raise PydanticCustomError("key_missing", "give api_key or id")
        return self
