"""The optional dependencies of ``lanesync bench`` (the ``bench`` extra)."""

from __future__ import annotations

import importlib.util

BENCH_MODULES = {"matplotlib": "matplotlib", "pycrdt.websocket": "pycrdt-websocket"}
INSTALL_HINT = "pip install 'lanesync[bench]'"


def missing_bench_deps() -> list[str]:
    """Distributions of the ``bench`` extra that cannot be imported here."""
    missing = []
    for module, dist in BENCH_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(dist)
    return missing
