"""Activities: thin, idempotent adapters between the payment workflow and the outside world."""
