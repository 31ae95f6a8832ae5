"""Request bodies of the admin API (pydantic), with money parsed exactly.

Money arrives as a JSON number or a numeric string (the manager sends either) and becomes a
`Decimal` without passing through binary floating point: `AdminRoute` parses JSON numbers
as `Decimal` with the digits the client wrote. Amounts are exact to `MONEY_QUANTUM`
(0.000000001: USD for balances and quotas, USD per million tokens for prices); an amount
with finer non-zero digits is refused rather than rounded. Integers (ids, counts) must be
JSON integers and flags JSON booleans: `true` is not key 1, and `1` is not `true`.
Unknown fields are ignored so the original manager's forms keep working.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)
from pydantic_core import PydanticCustomError

from admin_api.deps import MAX_BIGINT
from admin_api.inputs import body_integer

__all__ = [
    "MONEY_QUANTUM",
    "ApplyKeyRequest",
    "BodyInteger",
    "KeyId",
    "NonNegativeMoney",
    "PositiveMoney",
    "RechargeRequest",
    "UpdateKeyRequest",
]

_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Bounds that keep every accepted amount storable in Postgres `numeric` and sensible as money;
# beyond them the request is bad input (400), not a database error (500).
_MAX_INTEGER_DIGITS = 15
_DECIMAL_PLACES = 9
_MAX_NUMERIC_CHARS = 100
MONEY_QUANTUM = Decimal(1).scaleb(-_DECIMAL_PLACES)
"""The smallest amount the API takes: 0.000000001 (USD, or USD per million tokens for prices)."""


def _parse_money(value: Any) -> Decimal:
    if isinstance(value, bool):  # bool is an int subclass; `true` is not an amount
        raise PydanticCustomError("money_type", "must be a number or a numeric string")
    if isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(str(value))
    elif isinstance(value, str) and len(value) <= _MAX_NUMERIC_CHARS and _NUMERIC.fullmatch(value.strip()):
        amount = Decimal(value.strip())
    elif isinstance(value, Decimal):
        amount = value
    else:
        raise PydanticCustomError("money_type", "must be a number or a numeric string")
    if not amount.is_finite():
        raise PydanticCustomError("money_finite", "must be a finite number")
    if amount == 0:
        return Decimal(0)  # not -0, nor 0E+999999999
    if amount.adjusted() >= _MAX_INTEGER_DIGITS:
        raise PydanticCustomError("money_range", "must be below 1e{digits}", {"digits": _MAX_INTEGER_DIGITS})
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite, so never 'n'/'N'/'F'
    if exponent < -_DECIMAL_PLACES:
        exact = amount.quantize(MONEY_QUANTUM)  # at most 24 digits: within the default precision
        if exact != amount:
            raise PydanticCustomError(
                "money_precision",
                "has digits below {quantum}; amounts are exact to {places} decimal places",
                {"quantum": f"{MONEY_QUANTUM:f}", "places": _DECIMAL_PLACES},
            )
        amount = exact  # only trailing zeros dropped
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

BodyInteger = Annotated[int, BeforeValidator(body_integer)]
"""An integer in a JSON body: a JSON integer, never `true`, `1.5`, `1.0` or `"1"`."""
KeyId = Annotated[BodyInteger, Field(ge=1, le=MAX_BIGINT)]
GroupId = Annotated[BodyInteger, Field(ge=-(2**31), le=2**31 - 1)]  # the column is a Postgres integer
Name = Annotated[str, Field(min_length=1, max_length=200)]
Email = Annotated[str, Field(max_length=320)]
Role = Literal["user", "admin"]
RateLimit = Annotated[BodyInteger, Field(ge=0, le=2**31 - 1)]
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
    disabled: StrictBool | None = None
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
