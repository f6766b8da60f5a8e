"""The per-client limit counts an IPv6 client by its /64 network (api/abuse.py).

A host given a /64 picks any of its 2^64 addresses at will: counted one address at a time, it
could try a fresh card from a fresh address for ever. IPv4 stays per address, and an
IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 client) is its IPv4 address.
The keying is a pure function; the limit itself is checked through ``abuse.admit`` on a
database of its own (tests/support/app.py).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest

from api import abuse
from store.abuse import Attempt
from tests.support.app import InProcessApi, in_process_api


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2:0:0:0:FFFF", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("::ffff:c633:6407", "198.51.100.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::1", "::/64"),
        ("unknown", "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_client_key(address: str, key: str) -> None:
    assert abuse.client_key(address) == key


def test_addresses_of_one_slash_64_share_a_key_and_ipv4_addresses_do_not() -> None:
    one_network = {abuse.client_key(f"2001:db8:ab:cd:{n:x}::{n:x}") for n in range(1, 500)}
    assert one_network == {"2001:db8:ab:cd::/64"}
    neighbours = {abuse.client_key(f"2001:db8:ab:{n:x}::1") for n in range(1, 50)}
    assert len(neighbours) == 49
    assert len({abuse.client_key(f"198.51.100.{n}") for n in range(1, 50)}) == 49


# --- through the limiter ---------------------------------------------------------------------

LIMITS = abuse.Limits(wrong_pins=0, card_failures=0, client_cards=2, session_methods=0)


@pytest.fixture(scope="module")
def api() -> Iterator[InProcessApi]:
    with in_process_api() as in_process:
        yield in_process


def _admit(api: InProcessApi, client: str) -> int:
    """A new card from ``client`` on a new payment, counted by ``abuse.admit``."""
    payment = api.created()
    attempt = Attempt(
        payment_id=payment["id"],
        attempt=1,
        method_type="card",
        card=secrets.token_bytes(32),
        client=client,
        session=None,
    )
    return api.run(abuse.admit(api.pool, LIMITS, attempt))


def test_two_addresses_in_one_slash_64_share_the_per_client_limit(api: InProcessApi) -> None:
    network = f"2001:db8:{uuid.uuid4().int % 0xFFFF:x}:7"
    _admit(api, f"{network}::a")
    _admit(api, f"{network}:1234:5678:9abc:def0")
    with pytest.raises(abuse.TooManyAttempts):
        _admit(api, f"{network}::c")  # a third card from the same /64, by a third address
    _admit(api, f"{network[:-1]}8::a")  # the next /64 is another client
    assert {r["client"] for r in api.fetch("SELECT client FROM payer_attempts")} >= {
        f"{network}::/64"
    }


def test_ipv4_addresses_are_counted_apart_and_a_mapped_one_as_itself(api: InProcessApi) -> None:
    _admit(api, "203.0.113.10")
    _admit(api, "::ffff:203.0.113.10")
    with pytest.raises(abuse.TooManyAttempts):
        _admit(api, "203.0.113.10")
    _admit(api, "203.0.113.11")
