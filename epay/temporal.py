"""The one place a Temporal client is made, so every client and worker converts data alike."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from temporalio.client import Client
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.runtime import Runtime

from epay.codec import EncryptionCodec, PayloadKeys
from epay.config import Settings
from epay.telemetry import temporal_interceptors

log = logging.getLogger("epay.temporal")


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


async def connect_when_reachable(
    settings: Settings, *, runtime: Runtime | None = None, attempts: int = 30
) -> Client:
    """:func:`connect`, retried once a second while Temporal is not reachable yet (it may be
    starting beside this process, or restarting), before giving up with its error."""
    for attempt in range(1, attempts + 1):
        try:
            return await connect(settings, runtime=runtime)
        except RuntimeError:  # the SDK's "Failed client connect" for an unreachable server
            if attempt == attempts:
                raise
            log.warning(
                "Temporal at %s not reachable yet (try %d)", settings.temporal_address, attempt
            )
            await asyncio.sleep(1)
    raise AssertionError("unreachable")


def payment_workflow_id(payment_id: str) -> str:
    return f"payment-{payment_id}"
