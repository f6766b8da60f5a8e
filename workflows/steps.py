"""How ePay's workflows take a step: a database step or a call to the outside world, on
which task queue, retried how, and what its trouble means.

The workflows say which step runs, with which of the policies and timeouts named here
(passed at the call), and what a failure means to their business; this module holds the
machinery alone. Like the workflow modules, it imports no I/O library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    from domain.failures import ErrorType, FailureCode
    from domain.queues import Role, task_queue

A = TypeVar("A")
T = TypeVar("T")

# Database steps: short local transactions, retried for as long as the database is away,
# backing off to minutes so that the history grows by a few events an attempt. Waits longer
# than LOCAL_RETRY_THRESHOLD are durable timers rather than workflow-task heartbeats. After
# about twelve hours (150 attempts, counted rather than timed so that it holds whatever the
# clocks do) a payment fails loudly instead of nearing Temporal's history limits, and the
# sweeper finishes it once the database is back.
RECORD_TIMEOUT = timedelta(seconds=10)
RECORD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=150,
)
LOCAL_RETRY_THRESHOLD = timedelta(seconds=5)
# Calls to issuers, acquirers and departments: retried with backoff on transient trouble.
OUTSIDE_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[
        ErrorType.AUTHORISATION_FAILED,
        ErrorType.CAPTURE_REFUSED,
        ErrorType.DEPARTMENT_ERROR,
    ],
)
# Compensations must end up done: they retry without limit.
COMPENSATION_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
)
# One try: the workflow, not the activity, decides when to try again.
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)


def queue(role: Role) -> str:
    """The task queue of ``role``'s activities, derived from this workflow's own."""
    return task_queue(workflow.info().task_queue, role)


async def call(
    activity: Callable[[Any, A], Awaitable[T]],
    arg: A,
    *,
    role: Role,
    retry_policy: RetryPolicy,
    summary: str | None = None,
    **timeouts: Any,
) -> T:
    """An activity on ``role``'s task queue."""
    return await workflow.execute_activity_method(
        activity,
        arg,
        summary=summary,
        task_queue=queue(role),
        retry_policy=retry_policy,
        **timeouts,
    )


async def local(
    activity: Callable[[Any, A], Awaitable[T]],
    arg: A,
    *,
    summary: str,
    retry_policy: RetryPolicy,
) -> T:
    """A database step: a local activity, its waits between attempts durable timers."""
    return await workflow.execute_local_activity_method(
        activity,
        arg,
        summary=summary,
        start_to_close_timeout=RECORD_TIMEOUT,
        local_retry_threshold=LOCAL_RETRY_THRESHOLD,
        retry_policy=retry_policy,
    )


def count(name: str, description: str, **labels: str) -> None:
    """One more in counter ``name`` (docs/observability.md). The SDK's workflow metric meter
    records nothing while a workflow replays, so a run counts once however often its
    history is replayed."""
    workflow.metric_meter().create_counter(name, description).add(1, labels)


def is_error(err: ActivityError, error_type: str) -> bool:
    """The activity failed with the partner's final answer: a non-retryable
    ``ApplicationError`` of ``error_type`` (not one of that type that ran out of attempts)."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.non_retryable and cause.type == error_type


def stopped_by_cancel(err: FailureError) -> bool:
    """An activity stopped because the workflow was cancelled in Temporal: the SDK reports
    it as the activity's failure, but it is the operator's cancel, not the partner's answer."""
    return isinstance(err, CancelledError) or isinstance(err.cause, CancelledError)


def _is_final(cause: BaseException | None) -> bool:
    return isinstance(cause, ApplicationError) and cause.non_retryable


class TryAgain(Exception):
    """A call's trouble is worth another attempt, which its caller schedules."""


class Steps:
    """The steps of a workflow that a business cancel may stop and a failed call may end: a
    payment's, whose department or operator may cancel it while it waits on a partner.

    ``cancel`` answers the cancel asked for meanwhile, if any, which a call raises once it
    is back; ``failed`` makes what a call that fails for good raises, from the failure code
    its caller gives and what went wrong; ``cancel_refused`` records that a Temporal cancel
    arrived during unstoppable work, and what that work was doing.
    """

    def __init__(
        self,
        *,
        cancel: Callable[[], Exception | None],
        failed: Callable[[FailureCode, str], Exception],
        cancel_refused: Callable[[str], Awaitable[None]],
    ) -> None:
        self._cancel = cancel
        self._failed = failed
        self._cancel_refused = cancel_refused

    def raise_if_cancelled(self) -> None:
        cancel = self._cancel()
        if cancel is not None:
            raise cancel

    async def call(
        self,
        activity: Callable[[Any, A], Awaitable[T]],
        arg: A,
        *,
        summary: str,
        role: Role,
        failure_code: FailureCode,
        retry_policy: RetryPolicy,
        abandon_on_cancel: bool = False,
        **timeouts: Any,
    ) -> T:
        """Call the outside world through an activity on ``role``'s task queue, retrying
        transient trouble.

        A call that fails for good (or runs out of time) raises ``failed`` with
        ``failure_code``; with a retry policy of one attempt, trouble worth retrying raises
        ``TryAgain`` instead, for the caller to retry on its own terms. A cancel asked for
        meanwhile applies once the call is back, or at once for a call that may wait long
        (``abandon_on_cancel``).
        """
        task = asyncio.ensure_future(
            call(activity, arg, role=role, retry_policy=retry_policy, summary=summary, **timeouts)
        )
        try:
            if abandon_on_cancel:
                await workflow.wait_condition(lambda: task.done() or self._cancel() is not None)
                if not task.done():
                    task.cancel()
            result = await task
        except asyncio.CancelledError:
            task.cancel()
            self.raise_if_cancelled()
            raise
        except ActivityError as err:
            self.raise_if_cancelled()
            if stopped_by_cancel(err):  # the workflow was cancelled in Temporal meanwhile
                raise asyncio.CancelledError from err
            if retry_policy.maximum_attempts == 1 and not _is_final(err.cause):
                raise TryAgain(str(err.cause)) from err
            raise self._failed(failure_code, f"{summary}: {err.cause}") from err
        self.raise_if_cancelled()
        return result

    async def local(
        self,
        activity: Callable[[Any, A], Awaitable[T]],
        arg: A,
        *,
        summary: str,
        retry_policy: RetryPolicy,
    ) -> T:
        """A database step, retried while the database is away (see RECORD_RETRY).

        One that fails for good is a defect, not a payment outcome: it fails the workflow
        task, which Temporal retries (the payment shows as stuck in the UI) until fixed.
        """
        try:
            return await local(activity, arg, summary=summary, retry_policy=retry_policy)
        except FailureError as err:  # a local activity's own failure may come unwrapped
            if stopped_by_cancel(err):  # the workflow was cancelled in Temporal meanwhile
                raise asyncio.CancelledError from err
            name = getattr(activity, "__name__", "database step")
            cause = err.cause if isinstance(err, ActivityError) else err
            if _is_final(cause):
                raise RuntimeError(f"{name} failed: {cause}") from err
            raise ApplicationError(
                f"{name}: the database was unreachable for "
                f"{retry_policy.maximum_attempts} attempts (hours); the sweeper finishes this "
                "payment once it is back",
                type=ErrorType.DATABASE_UNAVAILABLE,
                non_retryable=True,
            ) from err

    async def unstoppable(self, work: Awaitable[T], doing: str) -> T:
        """Run ``work`` to its end whatever arrives.

        Used once stopping half-way would strand money: capture and settle after the
        department confirmed, and compensation once begun. A Temporal cancel (an operator's
        button) that arrives meanwhile is recorded (``cancel_refused``), not obeyed.
        """
        task = asyncio.ensure_future(work)
        refused = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                refused = refused or not task.done()
            except Exception:  # noqa: BLE001 - the task's own outcome is raised below
                pass
        if refused:
            await self._cancel_refused(doing)
        return task.result()
