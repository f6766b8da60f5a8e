"""Task queues and worker roles: one queue for the workflows, one per partner kind.

The workflow task queue (``EPAY_TASK_QUEUE``) carries ``PaymentWorkflow``,
``SweeperWorkflow`` and their local activities (every database step of a payment). Each kind
of remote call has a queue of its own, derived from it, so that each is scaled and
rate-limited on its own: a department that answers slowly does not hold up card
authorisations, and an acquirer's limit applies to the whole fleet. Workflows derive the
queues from their own task queue, so a stack on another base queue stays self-contained.
"""

from __future__ import annotations

from enum import StrEnum

from domain.cards import MethodType


class Role(StrEnum):
    """What an ``epay worker`` process polls (``--role``, ``EPAY_WORKER_ROLE``)."""

    WORKFLOWS = "workflows"  # the workflow queue: both workflows, their database steps
    ACQUIRER = "acquirer"  # card calls
    ISSUER = "issuer"  # e-Dirham calls
    DEPARTMENTS = "departments"  # confirmations and revocations with departments
    RECORDS = "records"  # database steps run as remote activities (the sweeper's)
    ALL = "all"  # every queue, in one process


ACTIVITY_ROLES = (Role.ACQUIRER, Role.ISSUER, Role.DEPARTMENTS, Role.RECORDS)


def roles_in(role: Role) -> tuple[Role, ...]:
    """The single-queue roles a process of ``role`` runs, one Worker each."""
    return (Role.WORKFLOWS, *ACTIVITY_ROLES) if role is Role.ALL else (role,)


def task_queue(workflow_queue: str, role: Role) -> str:
    """The queue ``role`` polls: the workflow queue itself, or ``<workflow queue>-<role>``."""
    if role is Role.ALL:
        raise ValueError("the role 'all' polls every queue: ask for each of roles_in(ALL)")
    return workflow_queue if role is Role.WORKFLOWS else f"{workflow_queue}-{role.value}"


def payment_method_role(method_type: str) -> Role:
    """Who holds a payment method's funds: the e-Dirham issuer, or the card acquirer."""
    return Role.ISSUER if method_type == MethodType.E_DIRHAM else Role.ACQUIRER


def partner_name(method_type: str) -> str:
    """The partner a method's money moves through, as progress lines and notes name it."""
    return "e-Dirham issuer" if method_type == MethodType.E_DIRHAM else "card acquirer"
