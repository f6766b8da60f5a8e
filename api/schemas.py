"""Request and response bodies of the public API (served in the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic_core import PydanticCustomError

from domain.cards import holds_card_number
from domain.money import MAX_AMOUNT


def _no_card_number(value: str) -> str:
    """Text a department sends is stored, shown and passed to Temporal: no card number in it."""
    if holds_card_number(value):
        raise PydanticCustomError(
            "card_number_in_text",
            "Must not hold a card number (13 to 19 digits that pass the Luhn check).",
        )
    return value


# Free text of the department's: refused when it holds what may be a card number.
CardFree = AfterValidator(_no_card_number)

Fils = Annotated[StrictInt, Field(gt=0, le=MAX_AMOUNT, description="Amount in fils (AED 1 = 100)")]
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._/:#-]*$"
Reference = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=64,
        pattern=REFERENCE_PATTERN,
        description=(
            "The department's invoice or fine number, returned as sent. References that differ "
            "only in case or spaces are one invoice: at most one live or paid payment among them."
        ),
    ),
    CardFree,
]


def _no_nul(value: Any) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            _no_nul(item)


class Strict(BaseModel):
    """Request bodies: unknown fields are refused, and so is text PostgreSQL cannot store."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul(cls, value: Any) -> Any:
        _no_nul(value)
        return value


class Payer(Strict):
    # Kept with the payment and shown to operators as the rest of the department's text is:
    # no card number in any of them. A real phone number has at most 15 digits (E.164): only
    # a 13 to 15 digit one that passes the Luhn check (one in ten) is refused with the cards.
    name: Annotated[StrictStr, Field(min_length=1, max_length=200), CardFree] | None = None
    email: (
        Annotated[
            StrictStr,
            Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
            CardFree,
        ]
        | None
    ) = None
    phone: (
        Annotated[StrictStr, Field(max_length=20, pattern=r"^\+?[0-9 ]{6,19}$"), CardFree] | None
    ) = None


class CreatePayment(Strict):
    service_code: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    reference: Reference
    amount: Fils | None = Field(
        default=None, description="Required for variable-fee services, refused for fixed ones"
    )
    description: Annotated[StrictStr, Field(max_length=255), CardFree] | None = None
    payer: Payer | None = None
    return_url: (
        Annotated[StrictStr, Field(max_length=2000, pattern=r"^https?://\S+$"), CardFree] | None
    ) = None
    metadata: (
        Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=40), CardFree],
                Annotated[StrictStr, Field(max_length=500), CardFree],
            ],
            Field(max_length=15),
        ]
        | None
    ) = None


class CardMethod(Strict):
    method: Literal["card"]
    card_number: Annotated[StrictStr, Field(min_length=12, max_length=23)]
    expiry_month: StrictInt
    expiry_year: StrictInt
    cvv: Annotated[StrictStr, Field(pattern=r"^[0-9]{3,4}$")]
    cardholder_name: Annotated[StrictStr, Field(min_length=1, max_length=100)]


class EDirhamMethod(Strict):
    method: Literal["e_dirham"]
    card_number: Annotated[StrictStr, Field(min_length=16, max_length=19)]
    pin: Annotated[StrictStr, Field(pattern=r"^[0-9]{4,6}$")]


PaymentMethodBody = Annotated[CardMethod | EDirhamMethod, Field(discriminator="method")]


class ChallengeBody(Strict):
    otp: Annotated[StrictStr, Field(pattern=r"^[0-9]{4,10}$")]


class CancelBody(Strict):
    reason: Annotated[StrictStr, Field(max_length=255), CardFree] | None = None


class FieldError(BaseModel):
    field: str = Field(description="The field at fault, as sent (`payer.email`), or `body`")
    code: str = Field(description="Why, e.g. `missing`, `unknown_field`, `card_number_in_text`")
    message: str
    count: int | None = Field(
        default=None, description="How many unknown fields this entry stands for (not named)"
    )


class Problem(BaseModel):
    """An error (RFC 9457 problem details, `application/problem+json`) with a stable `code`.
    No error repeats a value that was sent."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | None = Field(default=None, description="For 422: the fields")


class Line(BaseModel):
    code: str
    amount: int


class Amount(BaseModel):
    total: int
    currency: str
    lines: list[Line]


class Method(BaseModel):
    type: str
    brand: str | None
    last4: str | None


class Failure(BaseModel):
    code: str
    message: str | None


class ReceiptOut(BaseModel):
    number: str
    issued_at: str


class RefundSummary(BaseModel):
    refunded: int
    available: int


class Payment(BaseModel):
    id: str
    department: str
    service_code: str
    reference: str
    state: str
    failure: Failure | None
    amount: Amount
    method: Method | None
    department_confirmation: str | None
    receipt: ReceiptOut | None
    refund_summary: RefundSummary
    description: str | None
    return_url: str | None
    metadata: dict[str, str]
    next_url: str | None
    expires_at: str
    created_at: str
    updated_at: str
    workflow_id: str


class PaymentList(BaseModel):
    items: list[Payment]
    has_more: bool
    next_cursor: str | None


class Event(BaseModel):
    event: str
    from_state: str | None
    to_state: str | None
    actor: str
    detail: str | None
    occurred_at: str


class EventList(BaseModel):
    items: list[Event]


class Service(BaseModel):
    code: str
    name: dict[str, str]
    fee: int | None
    exempt_from_added_fees: bool


class ServiceList(BaseModel):
    items: list[Service]


# --- refunds (api/refunds.py) -----------------------------------------------------------


class CreateRefund(Strict):
    amount: Fils = Field(
        description="Fils to return, at most what is still available (`refund_summary`)"
    )
    reason: Annotated[StrictStr, Field(max_length=255), CardFree] | None = None


class RefundLine(BaseModel):
    code: str = Field(description="The payment's line: `service_fee`, `knowledge_fee`, ...")
    amount: int = Field(description="Fils of that line this refund returns")


class Refund(BaseModel):
    id: str
    payment_id: str
    amount: int
    currency: str
    reason: str | None
    state: Literal["pending", "succeeded", "failed"]
    failure: Failure | None = Field(description="Why it failed (`refund_refused`, ...)")
    lines: list[RefundLine] = Field(
        description="How the amount splits over the payment's lines: the service fee first"
    )
    created_at: str
    updated_at: str


class RefundList(BaseModel):
    items: list[Refund] = Field(description="Newest first")
