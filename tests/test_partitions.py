"""Network partitions (``tests/partitions.py``): the cuts themselves on a namespace of their
own, then a small partition run, whose every payment's end is checked as the chaos run's."""

from __future__ import annotations

import ipaddress
import os
import socketserver
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.partitions import (
    NETNS_ETC,
    STATE,
    Network,
    host_links_of,
    hostname,
    ip,
    namespaces_of,
    namespaces_unavailable,
    probe,
)
from tests.support import ROOT, Process, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.e2e]  # namespaces and a stack of their own

SMALL_RUN = [
    "--payments", "36",
    "--seed", "2026",
    "--rate", "1.5",
    "--partitions", "6",
    "--cut-seconds", "4", "15",
    "--payment-window", "30",
    "--confirm-deadline", "60",
    "--time-limit", "150",
    "--grace", "20",
]  # fmt: skip

# Sends what stdin says over one connection kept open; prints what comes back or "timeout".
CLIENT = """
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
for line in sys.stdin:
    conn.sendall(line.encode())
    conn.settimeout(float(sys.argv[3]))
    try:
        print(conn.recv(100).decode().strip(), flush=True)
    except TimeoutError:
        print("timeout", flush=True)
"""


@pytest.fixture(scope="module")
def namespaces() -> None:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(f"network namespaces cannot be made here: {reason}")


class Echo(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(line)


@pytest.fixture
def echo() -> Iterator[int]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as server:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        yield server.server_address[1]
        server.shutdown()


def test_each_cut_stops_a_link_and_the_heal_gives_it_back(namespaces: None, echo: int) -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="epay-partition-test-"))
    with Network(workers=1) as network:
        link = network.workers[0].links["postgres"]
        owner = network.owner
        # From inside, only the links' host ends can be reached: no default route.
        routes = ip("-n", link.namespace, "-4", "route").splitlines()
        assert [r.split()[0] for r in routes] == [
            f"{ipaddress.IPv4Interface(f'{link.ns_addr}/30').network}"
            for link in network.workers[0].links.values()
        ]
        forwarder = Process(
            "forwarder",
            [
                sys.executable,
                "-m",
                "tests.forwarder",
                f"{link.host_addr}:{echo}",
                f"127.0.0.1:{echo}",
            ],
            dict(os.environ),
            log_dir,
        )
        try:
            wait_until(lambda: "forwarding" in forwarder.log(), timeout=30, what="forwarder")
            # A connection opened before the cut, by the link's name, as a worker's is.
            client = subprocess.Popen(
                ["ip", "netns", "exec", link.namespace, sys.executable, "-c", CLIENT,
                 hostname("postgres"), str(echo), "3"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            assert client.stdin is not None
            assert client.stdout is not None

            def say(text: str) -> str:
                assert client.stdin is not None
                assert client.stdout is not None
                client.stdin.write(text + "\n")
                client.stdin.flush()
                return client.stdout.readline().strip()

            assert say("before") == "before"
            # Blackholed: a new connection hangs, the open one gets no answer; healed, the
            # open one carries on where it was.
            network.blackhole(link, cut=True)
            assert probe(link.namespace, link.host_addr, echo, 1.5).startswith("TimeoutError")
            assert say("during") == "timeout"
            network.blackhole(link, cut=False)
            assert say("after") == "during"
            assert probe(link.namespace, link.host_addr, echo, 5) == "open"
            # Unreachable: a new connection fails at once.
            network.set_link(link, up=False)
            assert "Network is unreachable" in probe(link.namespace, link.host_addr, echo, 5)
            network.set_link(link, up=True)
            wait_until(
                lambda: probe(link.namespace, link.host_addr, echo, 2) == "open",
                timeout=20,
                what="the link up again",
            )
            # Reset: the link's forwarder gone, connections are refused and the open one ends.
            forwarder.kill()
            assert "ConnectionRefusedError" in probe(link.namespace, link.host_addr, echo, 5)
            client.stdin.close()
            assert client.wait(timeout=10) == 0
        finally:
            forwarder.stop()
    assert namespaces_of(owner) == []
    assert host_links_of(owner) == []
    assert network.subnet not in ip("route", "show", "table", "all")
    assert not (STATE / str(owner)).exists()
    assert not any(NETNS_ETC.glob(f"epay-p{owner}-*"))


def test_a_small_partition_run_ends_every_payment_with_nothing_left_behind(
    namespaces: None,
) -> None:
    run = subprocess.Popen(
        [sys.executable, "-m", "tests.partitions", *SMALL_RUN],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=420)
    except subprocess.TimeoutExpired:
        run.terminate()  # on SIGTERM it removes its stack and namespaces before it ends
        stdout, stderr = run.communicate(timeout=120)
    output = stdout[-10000:] + stderr[-4000:]
    if run.returncode == 77:
        pytest.skip(stdout.strip().splitlines()[-1])
    assert run.returncode == 0, output
    assert "partitions made: 6 of 6 planned" in stdout, output
    assert "violations: 0" in stdout, output
    assert "RESULT: OK" in stdout, output
    for kind in ("blackhole", "unreachable", "reset"):
        assert f"({kind})" in stdout, output
    for destination in ("temporal", "postgres", "partners"):
        assert f"cut from {destination}" in stdout, output
