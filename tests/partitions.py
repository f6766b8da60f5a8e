"""The chaos run with network partitions: ``python -m tests.partitions --payments 300``.

The chaos run's stack, payments and end checks (``tests/chaos.py``), with the workers, and
separately the API, in network namespaces the run makes itself. Each namespace is joined to
the host by a veth pair per destination (Temporal, PostgreSQL, the partners; the API's
payers instead of the partners), both ends addressed in a /24 of the run's own, and has no
default route: from inside, only the host ends of its links answer. On the host, a forwarder
per link (``tests/forwarder.py``) joins a link's host end to the service on the loopback, and
each namespace's ``/etc/hosts`` names the host end of each of its links
(``temporal.epay-partitions.test`` ...), so that every worker has the same settings and the
department's confirmation URL in the database works from any namespace.

While the payments go through every step, the run cuts one link or all of a namespace's
links for a while, then heals it:

- ``blackhole``: both ends address their frames to a hardware address no one has, so
  packets vanish and connections hang, as in most production partitions;
- ``unreachable``: the namespace's end of the link is down: new connections fail at once
  (network unreachable), established ones hang;
- ``reset``: the link's forwarder is killed: connections are refused or closed, as when
  the far side's proxy or host goes away.

Each cut and each heal is checked from inside the namespace (a connection that must fail,
then succeed). Namespaces, veths, the route that keeps the /24 on this machine and the
``/etc/netns`` files are removed at the end, on failure and on Ctrl-C or SIGTERM, and what
a killed run left is removed at the start of the next one. The run prints each partition,
how long it lasted and which payment states were in flight when it began, then the chaos
run's counts and violations; it exits 1 on any violation, on a payment that never ended, or
on a partition not made, and 77 (without running) where namespaces cannot be made.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos import ChaosStack, Options, Run, chaos_stack, options, parser, run_chaos
from tests.conftest import TERMINAL
from tests.support import BIN, Process, wait_until

SKIPPED = 77  # the run could not be made here (the automake convention)
SUBNETS = ipaddress.IPv4Network("10.213.0.0/16")  # the run takes the first free /24 of these
NAMES = "epay-partitions.test"  # <destination>.NAMES: the host end of that link
NOWHERE = "02:ee:ee:ee:ee:ee"  # where a blackholed link's frames are sent: no one
STATE = Path("/run/epay-partitions")  # a file per run, named by its pid, holding its subnet
NETNS_ETC = Path("/etc/netns")  # ip netns exec puts <dir>/<namespace>/hosts over /etc/hosts
PREFIX = "epay-p"  # namespaces are epay-p<pid>-api and epay-p<pid>-w<n>
WORKER_LINKS = ("temporal", "postgres", "partners")
API_LINKS = ("payers", "temporal", "postgres")
SHORT = {"temporal": "t", "postgres": "d", "partners": "x", "payers": "f"}
CUT_PROBE_SECONDS = 1.5
HEAL_PROBE_SECONDS = 20.0
# What the run cuts, in this order (a run of more starts again at the top): every
# destination and kind early, so that a small run has each.
SCHEDULE: tuple[tuple[str, str, str], ...] = (
    ("worker", "temporal", "blackhole"),
    ("worker", "postgres", "blackhole"),
    ("worker", "partners", "blackhole"),
    ("API", "postgres", "blackhole"),
    ("worker", "temporal", "reset"),
    ("worker", "postgres", "unreachable"),
    ("worker", "everything", "blackhole"),
    ("API", "temporal", "blackhole"),
    ("worker", "partners", "reset"),
    ("API", "payers", "blackhole"),
    ("worker", "temporal", "unreachable"),
    ("worker", "postgres", "reset"),
    ("worker", "partners", "unreachable"),
    ("API", "postgres", "reset"),
)
# Connects to argv[1]:argv[2] within argv[3] seconds; prints "open" or why not. Run with
# python -I -S, in a namespace or on the host.
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("open")
except OSError as err:
    print(type(err).__name__ + (": " + err.strerror if err.strerror else ""))
"""


class NetworkError(RuntimeError):
    pass


class CannotPartition(Exception):
    """The run cannot be made on this machine; says why."""


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def hostname(destination: str) -> str:
    return f"{destination}.{NAMES}"


def namespaces_unavailable() -> str | None:
    """Why this machine cannot make the run's namespaces, or None when it can."""
    if os.geteuid() != 0:
        return "not root: network namespaces and veth pairs need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        ip("netns", "add", probe)
        ip("-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
    except (NetworkError, OSError) as err:
        return f"cannot make a network namespace with a veth pair here: {err}"
    finally:
        ip("netns", "del", probe, check=False)
    return None


# --- the network ------------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """A veth pair from the host to a namespace; the namespace's end is named after what is
    at the host's end."""

    namespace: str
    destination: str
    host_if: str
    host_addr: str
    ns_addr: str

    @property
    def ns_if(self) -> str:
        return self.destination


@dataclass
class Namespace:
    name: str
    role: str  # "API", "worker 2"
    links: dict[str, Link] = field(default_factory=dict)


class Network:
    """The run's namespaces: the API's and one per worker, each with its links, in the first
    /24 of ``SUBNETS`` that no route or address of this machine overlaps. That /24 is kept on
    this machine by an unreachable route (the links' /30s are more specific), so that nothing
    meant for it can ever leave by the default route."""

    def __init__(self, workers: int) -> None:
        if 3 + 3 * workers > 64:
            raise ValueError("a /24 holds the links of at most 20 workers")
        self.owner = os.getpid()
        self.worker_count = workers
        self.subnet = ""
        self.api = Namespace("", "API")
        self.workers: list[Namespace] = []

    def __enter__(self) -> Network:
        for line in remove_leftovers():
            print(line, flush=True)
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _make(self) -> None:
        STATE.mkdir(parents=True, exist_ok=True)
        for candidate in free_subnets():
            self.subnet = str(candidate)
            (STATE / str(self.owner)).write_text(self.subnet + "\n")
            try:  # the route is the claim: a run starting at the same moment takes another
                ip("route", "add", "unreachable", self.subnet)
                break
            except NetworkError as err:
                if "File exists" not in str(err):
                    raise
        else:
            raise NetworkError(f"no free /24 left in {SUBNETS}")
        numbers = itertools.count()
        self.api = self._namespace("api", "API", API_LINKS, numbers)
        self.workers = [
            self._namespace(f"w{n}", f"worker {n}", WORKER_LINKS, numbers)
            for n in range(1, self.worker_count + 1)
        ]

    def _namespace(
        self, tag: str, role: str, destinations: Sequence[str], numbers: Iterator[int]
    ) -> Namespace:
        namespace = Namespace(f"{PREFIX}{self.owner}-{tag}", role)
        ip("netns", "add", namespace.name)
        ip("-n", namespace.name, "link", "set", "lo", "up")
        subnet = ipaddress.IPv4Network(self.subnet)
        for destination in destinations:
            pair = list(subnet.subnets(new_prefix=30))[next(numbers)]
            host_addr, ns_addr = (str(a) for a in itertools.islice(pair.hosts(), 2))
            link = Link(
                namespace.name,
                destination,
                f"ep{self.owner}{tag}{SHORT[destination]}",
                host_addr,
                ns_addr,
            )
            ip(
                "link",
                "add",
                link.host_if,
                "type",
                "veth",
                "peer",
                "name",
                link.ns_if,
                "netns",
                namespace.name,
            )
            ip("addr", "add", f"{host_addr}/30", "dev", link.host_if)
            ip("-n", namespace.name, "addr", "add", f"{ns_addr}/30", "dev", link.ns_if)
            ip("link", "set", link.host_if, "up")
            ip("-n", namespace.name, "link", "set", link.ns_if, "up")
            namespace.links[destination] = link
        etc = NETNS_ETC / namespace.name
        etc.mkdir(parents=True, exist_ok=True)
        names = "".join(f"{link.host_addr} {hostname(d)}\n" for d, link in namespace.links.items())
        (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n" + names)
        return namespace

    def remove(self) -> None:
        remove_run(self.owner, self.subnet)

    def describe(self) -> list[str]:
        lines = [f"network: {self.subnet}, no default route in any namespace"]
        for namespace in [self.api, *self.workers]:
            links = ", ".join(
                f"{d} {link.ns_addr}->{link.host_addr}" for d, link in namespace.links.items()
            )
            lines.append(f"  {namespace.role:9} in {namespace.name}: {links}")
        return lines

    # --- cuts ---------------------------------------------------------------------------

    @staticmethod
    def blackhole(link: Link, cut: bool) -> None:
        """Send both ends' frames to ``NOWHERE`` (cut) or let them find each other again."""
        ends = [
            ("-n", link.namespace, link.host_addr, link.ns_if),
            ("", "", link.ns_addr, link.host_if),
        ]
        for flag, namespace, address, device in ends:
            where = [flag, namespace] if flag else []
            if cut:
                ip(
                    *where,
                    "neigh",
                    "replace",
                    address,
                    "dev",
                    device,
                    "lladdr",
                    NOWHERE,
                    "nud",
                    "permanent",
                )
            else:
                ip(*where, "neigh", "del", address, "dev", device, check=False)

    @staticmethod
    def set_link(link: Link, up: bool) -> None:
        ip("-n", link.namespace, "link", "set", link.ns_if, "up" if up else "down")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The words that stand before a route's destination in `ip route` when it is not unicast.
ROUTE_TYPES = {
    "unicast",
    "unreachable",
    "blackhole",
    "prohibit",
    "local",
    "broadcast",
    "throw",
    "nat",
    "anycast",
    "multicast",
}


def free_subnets() -> list[ipaddress.IPv4Network]:
    """The /24s of ``SUBNETS`` that no route or address of this machine overlaps."""
    taken = []
    for line in ip("-4", "-o", "route", "show", "table", "all").splitlines():
        words = line.split()
        words = words[1:] if words and words[0] in ROUTE_TYPES else words
        with contextlib.suppress(ValueError, IndexError):
            if words[0] != "default":
                taken.append(ipaddress.ip_network(words[0], strict=False))
    for line in ip("-4", "-o", "addr", "show").splitlines():
        with contextlib.suppress(ValueError, IndexError):
            taken.append(ipaddress.ip_interface(line.split()[3]).network)
    return [
        candidate
        for candidate in list(SUBNETS.subnets(new_prefix=24))[1:]
        if not any(candidate.overlaps(t) for t in taken)
    ]


def namespaces_of(owner: int) -> list[str]:
    prefix = f"{PREFIX}{owner}-"
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.startswith(prefix)]


def host_links_of(owner: int) -> list[str]:
    pattern = re.compile(rf"^\d+: (ep{owner}(?:api|w\d+)[{''.join(SHORT.values())}])[@:]")
    return [
        m.group(1) for line in ip("-o", "link", "show").splitlines() if (m := pattern.match(line))
    ]


def remove_run(owner: int, subnet: str) -> list[str]:
    """Remove what the run ``owner`` made: its processes still in its namespaces, the
    namespaces (their veths go with them), their /etc/netns files, then its subnet's route
    and its state file; the route and the file stay while a veth does."""
    removed = []
    for host_if in host_links_of(owner):  # heal first, so that closing connections can close
        ip("neigh", "flush", "dev", host_if, "nud", "permanent", check=False)
    for name in namespaces_of(owner):
        ip("-n", name, "neigh", "flush", "nud", "permanent", check=False)
        for device in re.findall(r"^\d+: (\w+)[@:]", ip("-n", name, "-o", "link", "show"), re.M):
            ip("-n", name, "link", "set", device, "up", check=False)
        for pid in ip("netns", "pids", name, check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("netns", "del", name, check=False)
        shutil.rmtree(NETNS_ETC / name, ignore_errors=True)
        removed.append(name)
    deadline = time.monotonic() + 30
    while host_links_of(owner) and time.monotonic() < deadline:
        time.sleep(0.1)  # a namespace's devices go once its last socket has
    if host_links_of(owner):
        return [*removed, f"(veths of run {owner} still there: {host_links_of(owner)})"]
    if subnet:
        ip("route", "del", "unreachable", subnet, check=False)
        removed.append(f"route {subnet}")
    (STATE / str(owner)).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when empty
    return removed


def remove_leftovers() -> list[str]:
    """Remove what runs that are no longer alive left (killed before they could)."""
    lines = []
    owners = {int(f.name): f.read_text().strip() for f in STATE.glob("*") if f.name.isdigit()}
    for line in ip("netns", "list").splitlines():
        if m := re.match(rf"{PREFIX}(\d+)-", line):
            owners.setdefault(int(m.group(1)), "")
    for owner, subnet in sorted(owners.items()):
        if owner != os.getpid() and not alive(owner):
            removed = remove_run(owner, subnet)
            lines.append(f"removed what partition run {owner} left: {', '.join(removed)}")
    return lines


def probe(namespace: str | None, address: str, port: int, within: float) -> str:
    """Whether a connection to ``address:port`` opens, tried from ``namespace`` (or the host)."""
    where = ["ip", "netns", "exec", namespace] if namespace else []
    done = subprocess.run(
        [*where, sys.executable, "-I", "-S", "-c", PROBE, address, str(port), str(within)],
        capture_output=True,
        text=True,
        timeout=within + 30,
    )
    return done.stdout.strip() or done.stderr.strip()[-200:]


# --- the stack ----------------------------------------------------------------------------


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


class PartitionStack(ChaosStack):
    """The chaos stack with each worker in a namespace of its own and the API in another;
    they reach Temporal, PostgreSQL and the sandbox by their links' names, through the
    links' forwarders. The payers (the run) reach the API at its namespace's address."""

    def __init__(self, env: dict[str, str], dsn: str, log_dir: Path, network: Network) -> None:
        database = urllib.parse.urlsplit(dsn)
        if database.hostname not in ("127.0.0.1", "localhost"):
            raise CannotPartition(
                "the partition run forwards PostgreSQL over TCP on the loopback; "
                f"the test database is at {database.hostname or 'a socket'}"
            )
        self.network = network
        self.ports = {
            "temporal": port_of(env["TEMPORAL_ADDRESS"]),
            "postgres": database.port or 5432,
            "partners": port_of(env["EPAY_SANDBOX_URL"]),
        }
        front = network.api.links["payers"]
        api_url = f"http://{front.ns_addr}:{port_of(env['EPAY_PUBLIC_URL'])}"
        super().__init__(env | {"EPAY_PUBLIC_URL": api_url}, dsn, log_dir)
        user = database.netloc.rpartition("@")[0]
        at_postgres = f"{user}@" if user else ""
        at_postgres += f"{hostname('postgres')}:{self.ports['postgres']}"
        partners = f"http://{hostname('partners')}:{self.ports['partners']}"
        self.inside = {  # what a process in a namespace is given over the stack's settings
            "TEMPORAL_ADDRESS": f"{hostname('temporal')}:{self.ports['temporal']}",
            "DATABASE_URL": urllib.parse.urlunsplit(database._replace(netloc=at_postgres)),
            "EPAY_SANDBOX_URL": partners,
            "EPAY_DEPARTMENT_BASE_URL": f"{partners}/departments",
        }
        self.forwarders: dict[Link, Process] = {}
        self.slot_of: dict[Process, Namespace] = {}
        self._where = threading.local()

    @contextlib.contextmanager
    def _in(self, namespace: Namespace) -> Iterator[None]:
        self._where.namespace = namespace.name
        try:
            yield
        finally:
            self._where.namespace = None

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> Process:
        namespace = getattr(self._where, "namespace", None)
        if namespace is not None:
            args = ("ip", "netns", "exec", namespace, *args)
            env = (env or self.env) | self.inside
        return super().spawn(name, *args, env=env)

    def epay(self, *args: str) -> str:
        """``epay seed`` runs where the workers do: the departments' confirmation URLs that it
        writes to the database name the partners as a namespace sees them, and it hands the
        sandbox's departments their signing secrets there."""
        if args[:1] != ("seed",):
            return super().epay(*args)
        self.start_forwarders(self.network.workers[0])
        with self._in(self.network.workers[0]):
            return super().epay(*args)

    def start_worker(self, role: str | None = None, **env: str) -> Process:
        """A worker in the first worker namespace that has none."""
        taken = {self.slot_of[w].name for w in self.workers if w in self.slot_of}
        slot = next(ns for ns in self.network.workers if ns.name not in taken)
        self.start_forwarders(slot)
        with self._in(slot):
            worker = super().start_worker(role, **env)
        self.slot_of[worker] = slot
        return worker

    def start_api(self) -> Process:
        api = self.network.api
        self.start_forwarders(api)
        address, port = api.links["payers"].ns_addr, str(port_of(self.api_url))
        with self._in(api):
            return self.spawn(
                "api",
                str(BIN / "epay"),
                "api",
                "--host",
                address,
                "--port",
                port,
            )

    def start_forwarders(self, namespace: Namespace) -> None:
        """The forwarders of ``namespace``'s links that are not running."""
        for link in namespace.links.values():
            running = link in self.forwarders and self.forwarders[link].alive()
            if link.destination in self.ports and not running:
                self.start_forwarder(link)

    def start_forwarder(self, link: Link) -> None:
        port = self.ports[link.destination]
        forwarder = Process(
            f"forward-{link.host_if}",
            [
                sys.executable,
                "-m",
                "tests.forwarder",
                f"{link.host_addr}:{port}",
                f"127.0.0.1:{port}",
                "--parent",
                str(os.getpid()),
            ],
            self.env,
            self.log_dir,
        )
        self.forwarders[link] = forwarder
        wait_until(
            lambda: "forwarding" in forwarder.log(), timeout=30, what="forwarder", proc=forwarder
        )

    def stop_all(self) -> None:
        super().stop_all()
        for forwarder in self.forwarders.values():
            forwarder.stop()

    # --- partitions ------------------------------------------------------------------------

    def cut(self, p: Partition, cut: bool = True) -> None:
        """Make the partition ``p``, or heal it (``cut=False``)."""
        for link in p.links:
            if p.kind == "blackhole":
                self.network.blackhole(link, cut)
            elif p.kind == "unreachable":
                self.network.set_link(link, up=not cut)
            elif cut:
                self.forwarders[link].kill()
                self.forwarders[link].stop()
            else:
                self.start_forwarder(link)

    def probe(self, p: Partition, within: float) -> list[str]:
        """For each of the partition's links, whether a connection across it opens: from the
        namespace to the link's forwarder, or from the payers (the host) to the API."""
        outcomes = []
        for link in p.links:
            if link.destination == "payers":
                outcomes.append(probe(None, link.ns_addr, port_of(self.api_url), within))
            else:
                port = self.ports[link.destination]
                outcomes.append(probe(link.namespace, link.host_addr, port, within))
        return outcomes


# --- the partitions -----------------------------------------------------------------------


@dataclass
class Partition:
    number: int
    namespace: Namespace
    destination: str  # a link's, or "everything"
    kind: str  # blackhole, unreachable or reset
    at: float  # the share of the payments asked for when it begins
    planned: float  # seconds
    links: list[Link]
    after_creates: int = 0
    in_flight: Counter[str] = field(default_factory=Counter)  # payments, when it began
    moved: Counter[str] = field(default_factory=Counter)  # their steps while it lasted
    cut_seen: str = ""
    lasted: float = 0.0
    healed_after: float = 0.0
    made: bool = False

    @property
    def what(self) -> str:
        if self.destination == "payers":
            return f"payers cut from the API ({self.kind})"
        return f"{self.namespace.role} cut from {self.destination} ({self.kind})"


def plan_partitions(
    network: Network, count: int, seconds: tuple[float, float], rng: random.Random
) -> list[Partition]:
    workers = itertools.cycle(rng.sample(network.workers, len(network.workers)))
    plans = []
    for number in range(1, count + 1):
        who, destination, kind = SCHEDULE[(number - 1) % len(SCHEDULE)]
        namespace = next(workers) if who == "worker" else network.api
        links = (
            list(namespace.links.values())
            if destination == "everything"
            else [namespace.links[destination]]
        )
        at, planned = rng.uniform(0.05, 0.9), rng.uniform(*seconds)
        plans.append(Partition(number, namespace, destination, kind, at, planned, links))
    return plans


async def make_partitions(run: Run, stack: PartitionStack, plans: list[Partition]) -> None:
    """The partitions of each namespace one after another, the namespaces' side by side; a
    partition is done once its cut and its heal have both been seen from its namespace."""
    run.chaos_planned["partition"] += len(plans)
    by_namespace: dict[str, list[Partition]] = defaultdict(list)
    for p in plans:
        by_namespace[p.namespace.name].append(p)
    try:
        await asyncio.gather(
            *(
                one_after_another(run, stack, sorted(ps, key=lambda p: p.at))
                for ps in by_namespace.values()
            )
        )
    finally:
        run.summary.extend(summary(plans))


async def one_after_another(run: Run, stack: PartitionStack, plans: list[Partition]) -> None:
    for p in plans:
        await run.wait_for_creates(p.at * run.opts.payments)
        if time.monotonic() >= run.deadline:
            return
        await make(run, stack, p)


async def in_flight(run: Run) -> Counter[str]:
    """The payments that have not ended, by state."""
    rows = await run.pool.fetch(
        "SELECT state, count(*) AS n FROM payments WHERE NOT state = ANY($1::text[]) "
        "GROUP BY state",
        sorted(TERMINAL),
    )
    return Counter({r["state"]: r["n"] for r in rows})


async def last_event(run: Run) -> int:
    return int(await run.pool.fetchval("SELECT coalesce(max(id), 0) FROM payment_events"))


async def moves_since(run: Run, event: int) -> Counter[str]:
    """The steps payments have taken since ``event``, by the state each step led to."""
    rows = await run.pool.fetch(
        "SELECT coalesce(to_state, event) AS step, count(*) AS n FROM payment_events "
        "WHERE id > $1 GROUP BY step",
        event,
    )
    return Counter({r["step"]: r["n"] for r in rows})


async def make(run: Run, stack: PartitionStack, p: Partition) -> None:
    p.after_creates = run.create_attempts_done
    p.in_flight, first = await in_flight(run), await last_event(run)
    began = time.monotonic()
    try:
        await asyncio.to_thread(stack.cut, p)
        seen = await asyncio.to_thread(stack.probe, p, CUT_PROBE_SECONDS)
        p.cut_seen = "; ".join(seen)
        cut = not any(outcome == "open" for outcome in seen)
        run.note(
            f"partition {p.number}: {p.what} for {p.planned:.1f}s "
            f"(after {p.after_creates} creates; a connection across it: {p.cut_seen}; "
            f"payments in flight: {states(p.in_flight)})"
        )
        await asyncio.sleep(max(began + p.planned - time.monotonic(), 0))
    finally:
        stack.cut(p, cut=False)  # not in a thread: a run cancelled here heals too
        p.lasted = time.monotonic() - began
    p.moved = await moves_since(run, first)
    healed = await until_open(stack, p)
    p.made = cut and healed is not None
    p.healed_after = healed or 0.0
    if p.made:
        run.chaos_done["partition"] += 1
        run.note(
            f"partition {p.number}: healed after {p.lasted:.1f}s "
            f"(connections open again {p.healed_after:.1f}s later)"
        )
    else:
        run.note(f"partition {p.number}: NOT MADE (cut seen: {p.cut_seen}; healed: {healed})")


async def until_open(stack: PartitionStack, p: Partition) -> float | None:
    """Seconds until a connection opens across every link of ``p`` again, or None."""
    began = time.monotonic()
    while time.monotonic() - began < HEAL_PROBE_SECONDS:
        if all(o == "open" for o in await asyncio.to_thread(stack.probe, p, 2.0)):
            return time.monotonic() - began
        await asyncio.sleep(0.5)
    return None


def states(counts: Counter[str]) -> str:
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "none"


def summary(plans: list[Partition]) -> list[str]:
    made = [p for p in plans if p.made]
    lasted = [p.lasted for p in made]
    lines = [
        f"partitions made: {len(made)} of {len(plans)} planned"
        + (
            f", each lasting {min(lasted):.1f}s to {max(lasted):.1f}s, {sum(lasted):.0f}s in all"
            if lasted
            else ""
        )
    ]
    for p in plans:
        how_long = f"lasted {p.lasted:5.1f}s" if p.made else "NOT MADE"
        lines.append(
            f"  #{p.number:<2} {p.what:44} {how_long}, after {p.after_creates:3} creates\n"
            f"      payments in flight when it began: {states(p.in_flight)}\n"
            f"      their steps while it lasted: {states(p.moved)}"
        )
    found: Counter[str] = Counter()
    taken: Counter[str] = Counter()
    for p in made:
        found.update(p.in_flight.keys())
        taken.update(p.moved.keys())
    lines.append(f"states found in flight when a partition began (partitions): {states(found)}")
    lines.append(f"steps taken while a partition lasted (partitions): {states(taken)}")
    return lines


# --- the run ------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> tuple[Options, int, tuple[float, float]]:
    arguments = parser("python -m tests.partitions", __doc__)
    arguments.set_defaults(worker_kills=0, sandbox_restarts=0, temporal_restarts=0)
    arguments.add_argument(
        "--partitions", type=int, default=len(SCHEDULE), help="how many partitions to make"
    )
    arguments.add_argument(
        "--cut-seconds",
        type=float,
        nargs=2,
        default=[4.0, 50.0],
        metavar=("MIN", "MAX"),
        help="how long a partition lasts, drawn between the two",
    )
    args = arguments.parse_args(argv)
    low, high = args.cut_seconds
    return options(args), args.partitions, (low, high)


def main(argv: Sequence[str] | None = None) -> int:
    opts, count, seconds = parse(argv)
    reason = namespaces_unavailable()
    if reason is not None:
        print(f"partition run not made: {reason}", flush=True)
        return SKIPPED
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # cleans up, as Ctrl-C does
    print(
        f"partition run: seed {opts.seed}, {opts.payments} payments, {count} partitions",
        flush=True,
    )
    with Network(opts.workers) as network:
        print("\n".join(network.describe()), flush=True)
        plans = plan_partitions(network, count, seconds, random.Random(f"partitions {opts.seed}"))

        def stack_type(env: dict[str, str], dsn: str, log_dir: Path) -> ChaosStack:
            return PartitionStack(env, dsn, log_dir, network)

        try:
            with chaos_stack(opts, stack_type) as stack:
                assert isinstance(stack, PartitionStack)
                try:
                    return asyncio.run(run_until_stopped(stack, opts, plans))
                except asyncio.CancelledError:
                    print("partition run stopped by SIGTERM", flush=True)
                    return 128 + signal.SIGTERM
        except CannotPartition as err:
            print(f"partition run not made: {err}", flush=True)
            return SKIPPED


async def run_until_stopped(stack: PartitionStack, opts: Options, plans: list[Partition]) -> int:
    """The run, which SIGTERM cancels as Ctrl-C does; the stack and the network are removed
    either way. (Outside the event loop, SIGTERM raises KeyboardInterrupt, as Ctrl-C does.)"""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await run_chaos(stack, opts, also=[lambda run: make_partitions(run, stack, plans)])
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
