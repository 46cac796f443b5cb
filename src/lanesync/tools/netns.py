"""A private test network in Linux network namespaces: a switch, hosts, and nothing else.

Layout (``P`` is a prefix unique to one ``TestNet``, ``"lst"`` + 6 random hex digits)::

    P-sw       the "switch": Linux bridges br0, br1, ... (one per L2 segment), multicast
               snooping off so mDNS is flooded like on a dumb store switch
    P-h1 ...   one namespace per host: lo up, eth0 (eth1, ...) the far end of a veth pair
               whose near end is a port of the segment's bridge, 10.213.<segment+1>.<n>/24,
               and a default route through eth0 (without one, zeroconf's default
               interfaces fail with ENODEV)

Every link is created inside the switch namespace and its peer directly inside the host's
namespace, so the host's own network namespace never carries any of it: the test network
cannot reach the machine's real network card, and addresses may repeat between runs.

``TestNet.close()`` ends every process started through ``Host.popen`` (SIGTERM, then SIGKILL),
kills whatever else still runs inside the namespaces, deletes the namespaces (which deletes
their veths and bridges) and checks that nothing with the prefix is left behind. Use it as a
context manager, or through the ``net`` fixture in tests/discovery/conftest.py; both run
``close()`` whatever the test did. ``lanesync bench discovery`` uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lanesync.errors import NetnsError, NetnsUnavailable, UsageError
from lanesync.tools import nsagent
from lanesync.tools.procs import STOP_TIMEOUT_S, end_all

SUBNET = "10.213"  # 10.213.<segment + 1>.<host number>/24, only inside the namespaces
PREFIX_ROOT = "lst"
IP_TIMEOUT_S = 20.0


def run_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", *args],
        capture_output=True,
        text=True,
        timeout=IP_TIMEOUT_S,
        check=False,
    )
    if check and proc.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} -> exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can (checked without side
    effects; ``TestNet.create`` still reports a failing ``ip netns add``)."""
    if os.geteuid() != 0:
        return "not root (ip netns add needs CAP_SYS_ADMIN)"
    try:
        proc = run_ip("netns", "list", check=False)
    except FileNotFoundError:
        return "iproute2 (`ip`) is not installed"
    except subprocess.TimeoutExpired:
        return "`ip netns list` hung"
    if proc.returncode != 0:
        return f"`ip netns list` failed: {proc.stderr.strip()}"
    return None


@dataclass(eq=False)
class Host:
    """One network namespace of the test network (or, with ``ns=None``, the host's own
    namespace, used only for loopback daemons)."""

    net: TestNet | None
    name: str
    ns: str | None
    interfaces: dict[str, str] = field(default_factory=dict)  # device -> IPv4 address

    @property
    def address(self) -> str:
        """The host's first IPv4 address in the test network."""
        if not self.interfaces:
            raise NetnsError(f"{self.name} has no address in the test network")
        return next(iter(self.interfaces.values()))

    def command(self, *args: str | Path) -> list[str]:
        """``args`` as a command that runs inside this namespace."""
        argv = [str(a) for a in args]
        return argv if self.ns is None else ["ip", "netns", "exec", self.ns, *argv]

    def run(
        self, *args: str | Path, timeout: float = 60.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=env,
            check=False,
        )

    def popen(
        self,
        args: Sequence[str | Path],
        *,
        env: dict[str, str] | None = None,
        stdin: int | IO[Any] | None = subprocess.DEVNULL,
        stdout: int | IO[Any] | None = None,
        stderr: int | IO[Any] | None = None,
        text: bool = False,
    ) -> subprocess.Popen[Any]:
        """Start ``args`` inside the namespace. ``ip netns exec`` execs the command, so the
        returned pid is the command's own. The process is ended by ``TestNet.close()``."""
        process = subprocess.Popen(
            self.command(*args), env=env, stdin=stdin, stdout=stdout, stderr=stderr, text=text
        )
        if self.net is not None:
            self.net.processes.append(process)
        return process


def stop_process(
    process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S, *, signalled: bool = False
) -> int:
    """SIGTERM (unless ``signalled`` already), then SIGKILL when it does not exit within
    ``timeout``; returns the exit code. One SIGTERM only: a second one during a clean
    shutdown would cut the shutdown short."""
    if process.poll() is None and not signalled:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout)


# The agent ends at the end of its input; a few seconds covers writing its coverage data.
AGENT_STOP_S = 5.0


class ApiAgent:
    """``lanesync.tools.nsagent`` running inside ``host``'s namespace: it reaches the local APIs
    of the daemons there, one request at a time (callers in several threads take turns)."""

    def __init__(self, host: Host, env: dict[str, str] | None = None) -> None:
        self.host = host
        self._lock = threading.Lock()
        self.process = host.popen(
            [sys.executable, "-m", nsagent.__name__],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, directory: Path, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """``nsagent``'s answer: ``{"status", "body", "pid", "t"}``, or ``{"error", "t"}`` when
        no daemon answered. Raises ``NetnsError`` when the agent itself is gone."""
        request = {"dir": str(directory), "method": method, "path": path, "body": body}
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise NetnsError(f"the API agent in {self.host.name} has no pipes")
        with self._lock:
            try:
                stdin.write(json.dumps(request) + "\n")
                stdin.flush()
            except OSError as exc:
                raise NetnsError(f"the API agent in {self.host.name} is gone: {exc}") from exc
            line = stdout.readline()
        if not line:
            code = self.process.poll()
            raise NetnsError(f"the API agent in {self.host.name} exited (code {code})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # the agent ends at the end of its input, cleanly
        # No SIGTERM on top: it would cut the agent's own exit short (its coverage data too).
        stop_process(self.process, AGENT_STOP_S, signalled=True)
        if self.process.stdout is not None:
            self.process.stdout.close()


class TestNet:
    """A switch namespace with one bridge per segment, and host namespaces joined to it."""

    __test__ = False  # not a pytest test class

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = prefix or f"{PREFIX_ROOT}{secrets.token_hex(3)}"
        self.switch = f"{self.prefix}-sw"
        self.hosts: list[Host] = []
        self.segments = 0
        self.processes: list[subprocess.Popen[Any]] = []
        self._namespaces: list[str] = []

    @classmethod
    def create(cls, segments: int = 1) -> TestNet:
        """The switch namespace with ``segments`` bridges; raises ``NetnsUnavailable`` when
        namespaces cannot be created here."""
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        net = cls()
        try:
            net._add_namespace(net.switch)
        except NetnsError as exc:
            net.close()
            raise NetnsUnavailable(str(exc)) from None
        try:
            for _ in range(segments):
                net.add_segment()
        except BaseException:
            net.close()
            raise
        return net

    def __enter__(self) -> TestNet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building ---------------------------------------------------------------------------------

    def _add_namespace(self, ns: str) -> None:
        run_ip("netns", "add", ns)
        self._namespaces.append(ns)
        run_ip("-n", ns, "link", "set", "lo", "up")
        # IPv6 link-local addresses usable at once (duplicate address detection would leave
        # them "tentative" for a second or two; it is not what these tests are about).
        subprocess.run(
            [
                "ip", "netns", "exec", ns, "sysctl", "-qw",
                "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
            ],
            capture_output=True,
            timeout=IP_TIMEOUT_S,
            check=False,
        )  # fmt: skip

    def add_segment(self) -> int:
        """A new L2 segment (a bridge in the switch namespace); returns its number."""
        number = self.segments
        bridge = f"br{number}"
        run_ip("-n", self.switch, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0")
        run_ip("-n", self.switch, "link", "set", bridge, "up")
        self.segments += 1
        return number

    def add_host(self, name: str, segments: Sequence[int] = (0,)) -> Host:
        """A namespace with one interface (eth0, eth1, ...) on each of ``segments``."""
        if not segments:
            raise UsageError("a host needs at least one segment")
        index = len(self.hosts) + 1
        ns = f"{self.prefix}-{name}"
        self._add_namespace(ns)
        host = Host(self, name, ns)
        self.hosts.append(host)
        for position, segment in enumerate(segments):
            if not 0 <= segment < self.segments:
                raise UsageError(f"no segment {segment} (the network has {self.segments})")
            device, port = f"eth{position}", f"h{index}p{position}"
            run_ip(
                "-n", self.switch, "link", "add", port, "type", "veth",
                "peer", "name", device, "netns", ns,
            )  # fmt: skip
            run_ip("-n", self.switch, "link", "set", port, "master", f"br{segment}", "up")
            address = f"{SUBNET}.{segment + 1}.{index}"
            run_ip("-n", ns, "addr", "add", f"{address}/24", "dev", device)
            run_ip("-n", ns, "link", "set", device, "up")
            host.interfaces[device] = address
        run_ip("-n", ns, "route", "add", "default", "dev", "eth0")
        return host

    # -- tearing down -----------------------------------------------------------------------------

    def close(self) -> None:
        """End every process, delete every namespace; ``NetnsError`` if anything is left."""
        end_all(self.processes)
        for process in self.processes:
            for pipe in (process.stdin, process.stdout, process.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        errors = []
        for ns in reversed(self._namespaces):
            # Anything still inside one of our namespaces was started there by this test.
            pids = run_ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            proc = run_ip("netns", "del", ns, check=False)
            if proc.returncode != 0:
                errors.append(f"ip netns del {ns}: {proc.stderr.strip()}")
        self._namespaces.clear()
        left = self.leftovers()
        if errors or left:
            raise NetnsError(f"test network {self.prefix} not fully removed: {errors} {left}")

    def leftovers(self) -> list[str]:
        """Namespaces and links of the host namespace whose name carries the prefix."""
        names = run_ip("netns", "list", check=False).stdout.split()
        links = run_ip("-o", "link", "show", check=False).stdout.splitlines()
        return [n for n in names if n.startswith(self.prefix)] + [
            line for line in links if self.prefix in line
        ]


@contextlib.contextmanager
def private_network(hosts: Sequence[str] = (), segments: int = 1) -> Iterator[TestNet]:
    """``TestNet.create(segments)`` with ``hosts`` on segment 0, always closed afterwards."""
    net = TestNet.create(segments)
    try:
        for name in hosts:
            net.add_host(name)
        yield net
    finally:
        net.close()
