"""``epay ops``: find, understand and steer stuck payments from a terminal.

``command`` holds the commands' arguments and their description (``epay ops --help``);
``reading``, ``acting``, ``payer_limits`` and ``resolve`` what each does; ``output`` what it
prints; ``common`` what they share. The ``epay`` command imports this package only to run
``epay ops``.
"""

from __future__ import annotations

from commands.ops.command import add_parser, run

__all__ = ["add_parser", "run"]
