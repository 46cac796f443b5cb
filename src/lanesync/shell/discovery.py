"""LAN discovery with mDNS / DNS-SD (RFC 6762, RFC 6763) through python-zeroconf.

Each daemon registers one service instance of type ``_lanesync._tcp.local.`` whose TXT record
carries the protocol version, the store id, the terminal id and the fingerprint of the
terminal's key, and browses for the same type. What it finds is only a hint fed to the same peer
table as static ``--peer`` addresses: a discovered peer is dialled and must still pass the
certificate handshake. Entries of another store, of another protocol version, of ourselves, or
whose key fingerprint contradicts a certificate we already hold are ignored (logged at debug).

Liveness never comes from mDNS: a SIGKILLed responder's records linger for the PTR TTL
(at least 1,125 s, the PTR record's TTL floor, measured with zeroconf 0.154 on 2026-11-26);
the websocket keepalive notices a dead peer within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ifaddr
from zeroconf import (
    BadTypeInNameException,
    InterfaceChoice,
    IPVersion,
    NonUniqueNameException,
    ServiceInfo,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from lanesync.core.wire import PROTOCOL_VERSION
from lanesync.errors import UsageError

log = logging.getLogger("lanesync.discovery")

# RFC 6763 section 7: "_<service>._tcp"; the service name is ours, 15 characters at most.
SERVICE_TYPE = "_lanesync._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
# How often to look for changed interface addresses (a DHCP renewal, a cable moved to another
# switch port): re-announcing within this bound keeps peers dialling the right address.
ADDRESS_CHECK_S = 10.0


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a discovered instance claims (unverified until the handshake)."""

    instance: str
    store_id: str
    terminal_id: str
    key_fingerprint: str
    addresses: tuple[str, ...]  # most preferred first
    port: int


def interface_addresses(names: Sequence[str]) -> list[str]:
    """IP addresses of the named interfaces (``--interface``); an unknown name is an error."""
    adapters = {a.nice_name: a for a in ifaddr.get_adapters()}
    addresses: list[str] = []
    for name in names:
        adapter = adapters.get(name)
        if adapter is None:
            known = ", ".join(sorted(adapters))
            raise UsageError(f"no network interface {name!r} (this machine has: {known})")
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                addresses.append(ip.ip)
            else:
                addresses.append(f"{ip.ip[0]}%{ip.ip[2]}" if ip.ip[2] else ip.ip[0])
    return addresses


def announced_addresses(listen_host: str, interfaces: Sequence[str]) -> list[str]:
    """Addresses worth announcing: the listen address itself when it is specific, else every
    non-loopback address of the chosen (or all) interfaces."""
    if listen_host not in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
        return [listen_host]
    candidates = (
        interface_addresses(interfaces)
        if interfaces
        else [
            ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            for adapter in ifaddr.get_adapters()
            for ip in adapter.ips
        ]
    )
    result = []
    for text in candidates:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address.is_loopback or (address.version == 6 and listen_host == "0.0.0.0"):  # noqa: S104
            continue
        result.append(text)
    return result


def multicast_interfaces(
    listen_host: str, interfaces: Sequence[str]
) -> InterfaceChoice | list[str]:
    """Where to send and receive mDNS: the ``--interface`` addresses; only loopback when the
    daemon listens on loopback (announcing a loopback address to the LAN would be useless, and
    tests and demos must never multicast on a real network card); else every interface."""
    if interfaces:
        return interface_addresses(interfaces)
    if listen_host in ("localhost", "::1") or listen_host.startswith("127."):
        return ["::1"] if listen_host == "::1" else ["127.0.0.1"]
    return InterfaceChoice.All


def link_networks(
    listen_host: str, interfaces: Sequence[str]
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The subnets of the links this daemon does mDNS on. mDNS is link-local (RFC 6762 section
    2): an announcement naming an address on none of them came through another responder on
    this host or another segment, and is not followed."""
    chosen = multicast_interfaces(listen_host, interfaces)
    names = set(interfaces)
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            if isinstance(chosen, list) and not names and text not in chosen:
                continue
            if names and adapter.nice_name not in names:
                continue
            networks.append(ipaddress.ip_network(f"{text}/{ip.network_prefix}", strict=False))
    return networks


def on_links(
    addresses: Sequence[str], networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> tuple[str, ...]:
    kept = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if (address.version == 6 and address.is_link_local) or any(
            address in network for network in networks
        ):
            kept.append(text)
    return tuple(kept)


def _ip_version(networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> IPVersion:
    # IPv6 multicast on links without IPv6 only produces start-up errors ("network unreachable").
    has_v6 = any(n.version == 6 and not n.network_address.is_loopback for n in networks)
    return IPVersion.All if has_v6 else IPVersion.V4Only


def _packed(addresses: Sequence[str]) -> list[bytes]:
    packed = []
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        packed.append(socket.inet_pton(family, str(address)))
    return packed


def _prefer(addresses: Sequence[str]) -> tuple[str, ...]:
    # IPv4 first (works on every store LAN), then global IPv6, then link-local IPv6.
    def rank(text: str) -> tuple[int, str]:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address.version == 4:
            return (0, text)
        return (2 if address.is_link_local else 1, text)

    return tuple(sorted(set(addresses), key=rank))


class Discovery:
    def __init__(
        self,
        *,
        store_id: str,
        terminal_id: str,
        key_fingerprint: str,
        listen_host: str,
        port: int,
        interfaces: Sequence[str],
        on_found: Callable[[Announcement], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._store_id = store_id
        self._terminal_id = terminal_id
        self._key_fingerprint = key_fingerprint
        self._listen_host = listen_host
        self._port = port
        self._interfaces = list(interfaces)
        self._on_found = on_found
        self._on_lost = on_lost
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: ServiceInfo | None = None
        self._addresses: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._by_instance: dict[str, str] = {}  # instance name -> terminal id
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []

    @property
    def instance_name(self) -> str:
        return self._info.name if self._info else ""

    async def start(self) -> None:
        bind = multicast_interfaces(self._listen_host, self._interfaces)
        self._networks = link_networks(self._listen_host, self._interfaces)
        self._zc = AsyncZeroconf(interfaces=bind, ip_version=_ip_version(self._networks))
        self._addresses = announced_addresses(self._listen_host, self._interfaces)
        self._info = self._service_info(self._addresses)
        try:
            # allow_name_change: if another responder already holds our instance name (a
            # conflict, RFC 6762 section 9), zeroconf picks "name (2)"; the TXT record, not the
            # name, says who we are.
            await self._zc.async_register_service(self._info, allow_name_change=True)
        except NonUniqueNameException:
            log.warning("mdns.name_conflict instance=%s", self._info.name)
        self._browser = AsyncServiceBrowser(
            self._zc.zeroconf, [SERVICE_TYPE], handlers=[self._on_change]
        )
        self._spawn(self._watch_addresses())
        log.info(
            "mdns.registered instance=%s addresses=%s port=%d",
            self._info.name,
            ",".join(self._addresses),
            self._port,
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    # The call returns the goodbye broadcast as a task: wait for it to go out
                    # before closing, or peers only notice us gone through the keepalive.
                    await (await self._zc.async_unregister_service(self._info))
            await self._zc.async_close()

    def _service_info(self, addresses: Sequence[str]) -> ServiceInfo:
        name = f"{self._store_id}-{self._terminal_id}.{SERVICE_TYPE}"
        return ServiceInfo(
            SERVICE_TYPE,
            name,
            port=self._port,
            addresses=_packed(addresses),
            properties={
                "v": str(PROTOCOL_VERSION),
                "store": self._store_id,
                "terminal": self._terminal_id,
                "fp": self._key_fingerprint,
            },
            server=f"{self._store_id}-{self._terminal_id}.local.",
        )

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_addresses(self) -> None:
        while True:
            await asyncio.sleep(ADDRESS_CHECK_S)
            current = announced_addresses(self._listen_host, self._interfaces)
            if current != self._addresses and self._zc is not None and self._info is not None:
                self._addresses = current
                self._info = self._service_info(current)
                await self._zc.async_update_service(self._info)
                log.info("mdns.reannounced addresses=%s", ",".join(current))

    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            terminal = self._by_instance.pop(name, None)
            if terminal is not None:
                log.info("mdns.goodbye terminal=%s", terminal)
                self._on_lost(terminal)
            return
        self._spawn(self._resolve(name))

    async def _resolve(self, name: str) -> None:
        if self._zc is None:
            return
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
        except BadTypeInNameException:
            return
        if not await info.async_request(self._zc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("mdns.unresolved instance=%s", name)
            return
        found = self._parse(name, info)
        if found is not None:
            self._by_instance[name] = found.terminal_id
            self._on_found(found)

    def _parse(self, name: str, info: AsyncServiceInfo) -> Announcement | None:
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in info.properties.items()
        }
        if props.get("v") != str(PROTOCOL_VERSION):
            log.debug("mdns.ignored instance=%s reason=protocol version %s", name, props.get("v"))
            return None
        if props.get("store") != self._store_id:
            log.debug("mdns.ignored instance=%s reason=store %s", name, props.get("store"))
            return None
        terminal, key_fingerprint = props.get("terminal", ""), props.get("fp", "")
        if not terminal or not key_fingerprint or info.port is None:
            log.debug("mdns.ignored instance=%s reason=incomplete announcement", name)
            return None
        if terminal == self._terminal_id:
            return None
        addresses = _prefer(on_links(info.parsed_scoped_addresses(), self._networks))
        if not addresses:
            log.debug("mdns.ignored instance=%s reason=no address on our links", name)
            return None
        return Announcement(name, self._store_id, terminal, key_fingerprint, addresses, info.port)
