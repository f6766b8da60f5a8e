"""A TCP forwarder for the partition run: ``python -m tests.forwarder LISTEN TARGET --parent PID``.

It listens on ``LISTEN`` (``address:port``, the host end of one of the run's links) and joins
each connection to ``TARGET`` (a service on the host's loopback), byte for byte in both
directions, half-closes included. It is one link's way to one service, so that the run can
take that way down on its own (a partition that resets connections); it ends when the
process ``PID`` that started it is gone, so that a run killed outright leaves none behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

CHUNK = 65536


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy ``source`` to ``sink`` until its end, then half-close ``sink``."""
    while data := await source.read(CHUNK):
        sink.write(data)
        await sink.drain()
    if sink.can_write_eof():
        sink.write_eof()


async def join(
    target: tuple[str, int], client: asyncio.StreamReader, back: asyncio.StreamWriter
) -> None:
    try:
        upstream, forth = await asyncio.open_connection(*target)
    except OSError:
        back.transport.abort()  # the service is away: the client sees a reset
        return
    pumps = [asyncio.create_task(pump(client, forth)), asyncio.create_task(pump(upstream, back))]
    try:
        await asyncio.gather(*pumps)
        transports = [forth.transport, back.transport]
        for transport in transports:
            transport.close()
    except (OSError, asyncio.IncompleteReadError):
        # One side went away abruptly: so does the other.
        for task in pumps:
            task.cancel()
        for writer in (forth, back):
            writer.transport.abort()


async def watch_parent(parent: int) -> None:
    """Return once ``parent`` is no longer this process's parent (it has ended)."""
    while True:
        await asyncio.sleep(1)
        if os.getppid() != parent:
            return


async def serve(listen: tuple[str, int], target: tuple[str, int], parent: int) -> None:
    server = await asyncio.start_server(
        lambda reader, writer: join(target, reader, writer), *listen, reuse_address=True
    )
    async with server:
        print(f"forwarding {listen[0]}:{listen[1]} to {target[0]}:{target[1]}", flush=True)
        await watch_parent(parent)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.forwarder", description=__doc__)
    parser.add_argument("listen", type=address, help="address:port to listen on")
    parser.add_argument("target", type=address, help="address:port to forward to")
    parser.add_argument("--parent", type=int, default=os.getppid(), help="end when it is gone")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.target, args.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
