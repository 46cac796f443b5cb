"""Browse ``_lanesync._tcp.local.`` with plain python-zeroconf, not lanesync, for a while.

Run inside a test namespace only (``ip netns exec NS python browse.py SECONDS``): it uses
zeroconf's default interfaces, which in the host's own namespace would reach the real network.
Prints one JSON list: every instance seen, resolved, with its addresses, port and TXT record.

With ``--watch``, it instead prints one JSON line per browser event as it happens
(``{"t": time.monotonic(), "name": ..., "change": "Added" | "Updated" | "Removed"}``), and a
line ``{"ready": true}`` once browsing has started, until stdin closes or SECONDS pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

SERVICE_TYPE = "_lanesync._tcp.local."


async def browse(seconds: float) -> list[dict[str, Any]]:
    names: set[str] = set()

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    zc = AsyncZeroconf()
    browser = AsyncServiceBrowser(zc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    await asyncio.sleep(seconds)
    found = []
    for name in sorted(names):
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if await info.async_request(zc.zeroconf, 3000):
            found.append(
                {
                    "name": name,
                    "addresses": info.parsed_addresses(),
                    "port": info.port,
                    "txt": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
                }
            )
    await browser.async_cancel()
    await zc.async_close()
    return found


async def watch(seconds: float) -> None:
    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        event = {"t": time.monotonic(), "name": name, "change": state_change.name}
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    zc = AsyncZeroconf()
    browser = AsyncServiceBrowser(zc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=seconds)
    await browser.async_cancel()
    await zc.async_close()


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--watch":
        asyncio.run(watch(float(args[1]) if len(args) > 1 else 60.0))
        return
    seconds = float(args[0]) if args else 2.0
    sys.stdout.write(json.dumps(asyncio.run(browse(seconds))) + "\n")


if __name__ == "__main__":
    main()
