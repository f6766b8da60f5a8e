"""Activities: thin, idempotent adapters between the payment workflow and the outside world."""

from temporalio import activity


def compensation_begun(**labels: str) -> None:
    """Count the running compensation (void, revoke) in ``epay_compensations_total`` once:
    at its first attempt, whichever workflow (payment or sweeper) asked for it."""
    if activity.info().attempt != 1:
        return
    kind = activity.info().activity_type
    activity.logger.info("compensation begun: %s", kind)
    activity.metric_meter().create_counter(
        "epay_compensations", "Compensations begun, by kind (and method or department)"
    ).add(1, {"compensation": kind, **labels})
