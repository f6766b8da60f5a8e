"""Proof that an update to a payment came from ePay's API.

Anyone with access to the Temporal UI can send any update from its "Send an Update" button.
The payer's and the department's updates therefore carry a proof: an HMAC of the payment
id and the update's name under the API's secret. The workflow never holds the secret: its
input carries only a SHA-256 of each proof (a commitment), against which the validators
check what arrives. Each of these updates is accepted at most once per payment, so a proof
read from a history cannot be used again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from domain.models import MAX_METHODS

PROVEN_UPDATES = ("submit_payment_method", "submit_challenge_answer", "cancel")
# Taken once per payment method: a payment's second and third methods (the hosted page's
# tries after a decline) and their challenges have proofs of their own.
PER_METHOD_UPDATES = ("submit_payment_method", "submit_challenge_answer")


def proof_name(update: str, method: int = 1) -> str:
    """What the proof of ``update`` for the payment's ``method``-th method is made over."""
    return update if method == 1 else f"{update}#{method}"


def update_proof(secret: bytes, payment_id: str, update: str) -> str:
    digest = hmac.new(secret, f"update:{payment_id}:{update}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def commitment(proof: str) -> str:
    return hashlib.sha256(proof.encode()).hexdigest()


def commitments(secret: bytes, payment_id: str) -> dict[str, str]:
    """What the workflow's input carries: the commitment of each update's proof."""
    names = [*PROVEN_UPDATES] + [
        proof_name(u, n) for u in PER_METHOD_UPDATES for n in range(2, MAX_METHODS + 1)
    ]
    return {u: commitment(update_proof(secret, payment_id, u)) for u in names}


def proven(proof: str, expected_commitment: str) -> bool:
    return hmac.compare_digest(commitment(proof), expected_commitment)
