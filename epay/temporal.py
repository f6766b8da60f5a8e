"""The one place a Temporal client is made, so every client and worker converts data alike."""

from __future__ import annotations

import dataclasses

from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from epay.codec import EncryptionCodec, PayloadKeys
from epay.config import Settings
from epay.telemetry import temporal_interceptors


def data_converter(keys: PayloadKeys) -> DataConverter:
    """The SDK's default conversion, every payload encrypted (``epay/codec.py``), and failure
    messages and stack traces moved into an encrypted payload too."""
    return dataclasses.replace(
        DataConverter.default,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """A client on the configured cluster: address, namespace, TLS or mTLS and API key come
    from the SDK's environment configuration (``TEMPORAL_*``, see ``Settings``). Its calls,
    and the workers made from it, are traced (``epay.telemetry``); ``runtime`` is the
    process's (its Prometheus endpoint), else the SDK's default."""
    return await Client.connect(
        **settings.temporal_connect_config,
        data_converter=data_converter(settings.payload_keys),
        interceptors=temporal_interceptors(),
        runtime=runtime,
    )


def payment_workflow_id(payment_id: str) -> str:
    return f"payment-{payment_id}"
