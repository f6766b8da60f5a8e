"""Operator and developer commands: the ``epay`` console script and what it runs.

What belongs here and what does not: docs/design.md, "Where things are"."""
