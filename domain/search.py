"""What an operator can find payments by in the Temporal UI: the payment workflows' search
attributes, and the one line of current details each payment shows.

The values come from the payment's request and from the state machine in
``domain.states`` (the state itself, and whom each state waits for), so there is no second
list of states to keep in step. Search attributes and workflow ids are not encrypted:
nothing personal goes here (the reference is the department's invoice or fine number).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PAYMENT_STATE = SearchAttributeKey.for_keyword("PaymentState")
WAITING_FOR = SearchAttributeKey.for_keyword("WaitingFor")  # domain.states.WAITING_FOR
STEP_STARTED_AT = SearchAttributeKey.for_datetime("StepStartedAt")  # when the state began
DEPARTMENT = SearchAttributeKey.for_keyword("Department")
SERVICE_CODE = SearchAttributeKey.for_keyword("ServiceCode")
PAYMENT_REFERENCE = SearchAttributeKey.for_keyword("PaymentReference")  # normalised
AMOUNT_FILS = SearchAttributeKey.for_int("AmountFils")
PAYMENT_METHOD = SearchAttributeKey.for_keyword("PaymentMethod")  # e_dirham / card
FAILURE_CODE = SearchAttributeKey.for_keyword("FailureCode")

SEARCH_ATTRIBUTES = (
    PAYMENT_STATE,
    WAITING_FOR,
    STEP_STARTED_AT,
    DEPARTMENT,
    SERVICE_CODE,
    PAYMENT_REFERENCE,
    AMOUNT_FILS,
    PAYMENT_METHOD,
    FAILURE_CODE,
)
"""Every attribute, to register on a namespace before the first payment starts."""

_TYPE_NAMES = {"KEYWORD": "Keyword", "INT": "Int", "DATETIME": "Datetime"}


def dev_server_args() -> list[str]:
    """``temporal server start-dev`` flags that register every attribute."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}={_TYPE_NAMES[key.indexed_value_type.name]}"]
    return args
