"""One process of ``lanesync bench mesh``: a lanesync lane, or a pycrdt-websocket server or
client, driven over its stdin and stdout (``mesh_control``). Not meant to be run by hand::

    python -m lanesync.bench.studies.mesh_driver lanesync TERMINAL_DIR
    python -m lanesync.bench.studies.mesh_driver pycrdt-server
    python -m lanesync.bench.studies.mesh_driver pycrdt-client NAME

Commands (``{"id": N, "cmd": ...}``): ``connect`` (``urls``), ``status``, ``load`` (``rate``,
``count``, ``start_ns``, ``phase``), ``collect`` (``path``), ``profile`` (``on``, ``path``),
``quit``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable


def main(argv: Iterable[str]) -> None:
    args = list(argv)
    match args:
        case ["lanesync", directory]:
            from lanesync.bench.studies.mesh_lanesync import run_lanesync

            run_lanesync(directory)
        case ["pycrdt-server"]:
            from lanesync.bench.studies.mesh_pycrdt import PycrdtServer

            asyncio.run(PycrdtServer().run())
        case ["pycrdt-client", name]:
            from lanesync.bench.studies.mesh_pycrdt import PycrdtClient

            asyncio.run(PycrdtClient(name).run())
        case _:
            usage = "mesh_driver lanesync DIR | pycrdt-server | pycrdt-client NAME"
            raise SystemExit(f"usage: {usage}, not {args!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
