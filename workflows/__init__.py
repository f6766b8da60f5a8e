"""Temporal workflows: the payment process, deterministic and free of I/O."""
