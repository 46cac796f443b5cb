"""``lanesync`` with python-zeroconf's protocol timers shortened, for tests.

python-zeroconf's own test suite patches the module constants that pace probing (RFC 6762
section 8.1: three probes 250 ms apart after a random 0-250 ms delay), announcing and goodbyes
(section 8.3, 10.1) instead of waiting them out. lanesync's code is not changed for tests, so
the test daemons run through this wrapper::

    python quick_daemon.py run TERMINAL_DIR --listen 0.0.0.0:0 ...

The constants are read at call time from ``zeroconf._core`` (a pure-Python module in the
installed zeroconf; ``_services/info`` is compiled and cannot be patched). A zeroconf that no
longer has one of them stops the wrapper with a clear message instead of silently running with
the slow defaults. The ``lanesync.discovery`` logger is set to DEBUG so that ignored
announcements (``mdns.ignored ... reason=store ...``) show in the daemon's log.
"""

from __future__ import annotations

import logging
import sys

import zeroconf._core as zc_core

QUICK_TIMERS: dict[str, object] = {
    "_CHECK_TIME": 50,  # ms between probes (default 500 in this zeroconf)
    "_REGISTER_TIME": 50,  # ms between announcements (default 225)
    "_UNREGISTER_TIME": 50,  # ms between goodbyes (default 125)
    "_PROBE_RANDOM_DELAY_INTERVAL": (10, 30),  # ms before the first probe (default 150-250)
}


def patch_zeroconf() -> None:
    for name, value in QUICK_TIMERS.items():
        if not hasattr(zc_core, name):
            raise SystemExit(f"quick_daemon: zeroconf._core has no {name}; update QUICK_TIMERS")
        setattr(zc_core, name, value)


def main() -> None:
    patch_zeroconf()
    logging.getLogger("lanesync.discovery").setLevel(logging.DEBUG)
    from lanesync.cli.main import main as lanesync_main

    sys.argv = ["lanesync", *sys.argv[1:]]
    lanesync_main()


if __name__ == "__main__":
    main()
