"""The payload codec: every payload ePay hands Temporal is encrypted with AES-256-GCM.

Payer data (name, email, phone, description, metadata), 3-D Secure codes, vault tokens,
results, summaries and, through ``DefaultFailureConverterWithEncodedAttributes``, failure
messages and stack traces reach Temporal's history as ciphertext. Each encrypted payload
names the key that sealed it (metadata ``encryption-key-id``), so keys rotate: one active
key encrypts, every known key decrypts. Payloads that were never encrypted (histories
recorded before the codec) pass through unchanged.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class PayloadKeyError(ValueError):
    """A payload that cannot be decrypted with the keys this process knows."""


@dataclass(frozen=True)
class PayloadKeys:
    """The known payload keys by id, and the id of the one that encrypts."""

    keys: Mapping[str, bytes] = field(repr=False)
    active: str

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            if not _KEY_ID_PATTERN.fullmatch(key_id):
                raise ValueError(
                    f"EPAY_PAYLOAD_KEYS: key id {key_id!r} must be 1-64 letters, digits, . _ -"
                )
            if len(key) != 32:
                raise ValueError(f"EPAY_PAYLOAD_KEYS: key {key_id!r} must be 32 bytes, base64")
        if self.active not in self.keys:
            raise ValueError(
                f"EPAY_PAYLOAD_ACTIVE_KEY: {self.active!r} is not among EPAY_PAYLOAD_KEYS "
                f"({', '.join(self.keys) or 'none'})"
            )

    @classmethod
    def parse(cls, keys: str, active: str | None = None) -> PayloadKeys:
        """``k1:<base64 32 bytes>,k2:<base64>``; the active key defaults to the last listed."""
        parsed: dict[str, bytes] = {}
        for entry in (e.strip() for e in keys.split(",")):
            if not entry:
                continue
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep:
                raise ValueError(f"EPAY_PAYLOAD_KEYS: {key_id!r} is not of the form id:base64key")
            if key_id in parsed:
                raise ValueError(f"EPAY_PAYLOAD_KEYS: key id {key_id!r} is listed twice")
            try:
                parsed[key_id] = base64.b64decode(encoded.strip(), validate=True)
            except binascii.Error:
                raise ValueError(f"EPAY_PAYLOAD_KEYS: key {key_id!r} is not base64") from None
        if not parsed:
            raise ValueError("EPAY_PAYLOAD_KEYS is empty: give at least one id:base64key")
        return cls(parsed, active or list(parsed)[-1])

    @classmethod
    def single(cls, key_id: str, key: bytes) -> PayloadKeys:
        return cls({key_id: key}, key_id)


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over each whole serialised payload (metadata and data), keyed by id."""

    def __init__(self, keys: PayloadKeys) -> None:
        self._keys = keys
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self._keys.active
        cipher = self._ciphers[key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, KEY_ID: key_id.encode()},
                    data=nonce + sealed,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(p) for p in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # never encrypted: recorded before the codec, or not ours
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"payload encrypted with key {key_id!r}, which is not among EPAY_PAYLOAD_KEYS "
                f"(known: {', '.join(self._ciphers)}): add it back to decrypt"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise PayloadKeyError(
                f"payload encrypted with key {key_id!r} does not decrypt: EPAY_PAYLOAD_KEYS "
                "holds a different key under that id, or the payload was altered"
            ) from None
        return Payload.FromString(plain)
