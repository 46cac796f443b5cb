"""Sells in a loop until killed; run by test_durability.py as ``python durability_worker.py``.

    durability_worker.py MODE TERMINAL_DIR COMPACT_MIN_LOG_BYTES

MODE ``sync`` alternates ``Terminal.write`` and small batches (``helpers.write_together``); MODE
``async`` runs 16 concurrent sellers through a ``GroupCommitter``. A sale id is printed (and
flushed) only after the call that wrote it has returned: that line is the acknowledgement.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path

from helpers import write_together  # tests/shell: this script's own directory is on sys.path

from lanesync.core import bodies
from lanesync.core.records import Record, Sale
from lanesync.core.views import Views
from lanesync.shell import storage
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.terminal import Terminal

SELLERS = 16
LINES = [bodies.parse_line("milk:1:149")]


def sell(views: Views) -> Sale:
    return bodies.build_sale(views, LINES)


def acknowledge(records: Iterable[Record]) -> None:
    sys.stdout.write("".join(f"{record.id}\n" for record in records))
    sys.stdout.flush()


def sync_loop(terminal: Terminal) -> None:
    n = 0
    while True:
        n += 1
        if n % 2:
            acknowledge([terminal.write(sell)])
            continue
        acknowledge(write_together(terminal, [sell] * (2 + n % 5)))


async def async_loop(terminal: Terminal) -> None:
    committer = GroupCommitter(terminal)

    async def seller() -> None:
        while True:
            acknowledge([await committer.write(sell)])

    async with asyncio.TaskGroup() as group:
        group.create_task(committer.run())
        for _ in range(SELLERS):
            group.create_task(seller())


def main() -> None:
    mode, path, compact_min = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    storage.COMPACT_MIN_LOG_BYTES = compact_min
    with Terminal.open(path) as terminal:
        if mode == "sync":
            sync_loop(terminal)
        else:
            asyncio.run(async_loop(terminal))


if __name__ == "__main__":
    main()
