"""``epay report``: what the gateway collected, and how, over a period of business days.

The seed article reported what the Municipality collected through the gateway and how much of
it came by e-Dirham against credit card. This reports that and more, per department and
service: payments started and how they ended, the amount collected with its service fees and
its Knowledge and Innovation Dirham, the share of e-Dirham against card, the outcomes by
failure code, refunds and what is left once they are paid back, and how long a payment takes
from its creation to its capture. As aligned tables for a terminal, as one CSV for a
spreadsheet, or as an SVG chart.

What is counted, written down once (``docs/reports.md`` says the same to its readers):

- The period is whole business days in Dubai (UTC+4, no daylight saving), ``--from`` and
  ``--to`` included; payments are stored in UTC and a payment belongs to the day it was
  *created* on in Dubai. Every payment figure is about the payments created in the period,
  whatever the day they ended on.
- Refunds are those *requested* in the period (their ``created_at``), of any payment, under
  their payment's department and service; net collected is collected less the refunds that
  succeeded.
- Rates are over the payments that have ended (succeeded, failed, cancelled, expired); the
  ones still open are shown apart.
- Time to complete is from the payment's ``created_at`` to its ``captured`` event in the
  audit trail (``payment_events.occurred_at``), or its ``updated_at`` should a succeeded
  payment have no such event. It includes the payer's own time on the payment page.

Money stays integer fils from the database to the text: AED are formatted from the integers,
never through a float. The whole report reads one snapshot (a read-only repeatable-read
transaction), so that its tables agree with each other while payments go on.
"""

from __future__ import annotations

from commands.report.command import add_parser, run

__all__ = ["add_parser", "run"]
