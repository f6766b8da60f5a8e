"""The chart of accounts and the postings of a captured payment: the one place they are written.

The ledger is double-entry: a captured payment debits the partner that holds the payer's
money (the e-Dirham issuer's or the card acquirer's receivable) and credits each fee line's
account (the department's payable, the Knowledge and Innovation Dirham funds). A refund posts
the capture's entries of the refunded lines, negated. Writing the journals (store), checking
them (``epay ledger verify``) and matching them against the partners' files (settlement)
all name the accounts from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.cards import MethodType
from domain.money import FeeLine

#: The receivable of the partner that holds the payer's money, by method type.
SOURCES: dict[str, str] = {
    MethodType.E_DIRHAM: "e_dirham_issuer_receivable",
    MethodType.CARD: "card_acquirer_receivable",
}
#: Which partner settles each receivable (its settlement file is matched against it).
SOURCE_PARTNERS = {"e_dirham_issuer_receivable": "issuer", "card_acquirer_receivable": "acquirer"}
#: The funds the added fees are owed to; every other line is owed to its department.
FUNDS = {"knowledge_fee": "knowledge_dirham_fund", "innovation_fee": "innovation_dirham_fund"}
DEPARTMENT_PAYABLE = "department_payable:"
#: The fee lines a payment can have (domain.money.fee_lines): each has its account.
LINE_CODES = frozenset({"service_fee", *FUNDS})


def payable(department: str, line_code: str) -> str:
    """The account a fee line is owed to."""
    return FUNDS.get(line_code, f"{DEPARTMENT_PAYABLE}{department}")


def capture_postings(
    method_type: str, department: str, lines: Iterable[FeeLine]
) -> list[tuple[str, int]]:
    """The balanced entries of a captured payment: debit the funds source, credit each line."""
    lines = list(lines)
    if method_type not in SOURCES:
        raise ValueError(f"no funds source for the method {method_type!r}")
    if unknown := [line.code for line in lines if line.code not in LINE_CODES]:
        raise ValueError(f"no account for the fee lines {unknown}")
    entries = [(SOURCES[method_type], sum(line.amount for line in lines))]
    entries += [(payable(department, line.code), -line.amount) for line in lines]
    return entries


def refund_postings(
    method_type: str, department: str, lines: Iterable[FeeLine]
) -> list[tuple[str, int]]:
    """A refund's reversing entries: the capture's postings of the refunded lines, negated
    (credit the funds source by the amount, debit each line's account by its share)."""
    capture = capture_postings(method_type, department, lines)
    return [(account, -amount) for account, amount in capture if amount]


def line_of(account: str, department: str) -> str:
    """How totals name an account: ``<DEPT> service_fee``, or a fund's own name."""
    if account in FUNDS.values():
        return account
    return f"{department} service_fee" if account.startswith(DEPARTMENT_PAYABLE) else account
