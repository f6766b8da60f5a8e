"""``epay bench``: ePay end to end against the Temporal floor.

``command`` holds the options and what each figure measures (``epay bench --help``);
``run`` the two phases; ``epay_api`` and ``floor`` their pipelines; ``figures``,
``processes`` and ``database`` what is measured; ``output`` what is printed. A developer's
tool: no production process imports it (tests/test_layers.py).
"""

from __future__ import annotations

from tools.bench.command import main, parse

__all__ = ["main", "parse"]
