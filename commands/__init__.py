"""Operator and developer commands: the ``epay`` console script and what it runs (docs/design.md)."""
