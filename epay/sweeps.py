"""The sweeper's queries moved to store/sweeps.py. This module stays only until its last
importer, ``epay ops resolve`` (commands/ops.py), imports ``store.sweeps`` instead."""

from store.sweeps import LEFT_TO_OPERATOR, left_to_operator

__all__ = ["LEFT_TO_OPERATOR", "left_to_operator"]
