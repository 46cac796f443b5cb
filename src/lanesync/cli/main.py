"""``lanesync``: the command group. The commands live by what they are for: store setup
(setup_cmd), a terminal's life once enrolled (lifecycle_cmd: revoke, renew, resolve a fork),
selling and stock (lane_cmd), closing days and the Z-report (day_cmd), bundles and integrity
(sync_cmd), the daemon (daemon_cmd), the cloud (cloud_cmd), the simulator (sim_cmd) and
benchmarks (bench_cmd); the demo is here.

Exit codes: 0 success; 1 a lanesync error (one line on stderr, nothing changed) or ``verify``
found integrity problems; 2 a malformed command line (click's usage errors, one ``error:`` line
too: cli/group.py); 74 storage failed in ``run`` or ``cloud serve`` (a full disk, an I/O error:
they stop, for a supervisor to restart them); 130 interrupted by Ctrl-C (one line).
"""

from __future__ import annotations

from pathlib import Path

import click

from lanesync import __version__

from . import cloud_cmd, daemon_cmd, day_cmd, lane_cmd, lifecycle_cmd, setup_cmd, sync_cmd
from .common import (
    DIR,
    JSON_OPTION,
    reports_errors,
)
from .group import LanesyncGroup
from .output import console, emit_json


@click.group(cls=LanesyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lanesync")
def cli() -> None:
    """Keep the checkout lanes of a store in sync, with no server in the store."""


@cli.command()
@click.option("--dir", "work_dir", type=DIR, help="Keep the demo store here (default: a temp dir).")
@click.option("--offline", is_flag=True, help="Exchange bundle files instead of running lanes.")
@JSON_OPTION
@reports_errors
def demo(work_dir: Path | None, offline: bool, as_json: bool) -> None:
    """Run a store of four lanes live: sell, split, sell apart, heal, converge exactly."""
    console.quiet = as_json  # with --json, stdout holds only the final summary
    try:
        if offline:
            from lanesync.cli.demo import run_demo

            summary = run_demo(work_dir)
        else:
            from lanesync.cli.live_demo import run_live_demo

            summary = run_live_demo(work_dir)
    finally:
        console.quiet = False
    if as_json:
        emit_json(summary)


for command in (
    setup_cmd.store,
    setup_cmd.enroll,
    lifecycle_cmd.revoke,
    lane_cmd.sell,
    lane_cmd.void,
    lane_cmd.receive,
    lane_cmd.adjust,
    lane_cmd.price,
    lane_cmd.stock,
    lane_cmd.sales,
    day_cmd.close,
    day_cmd.report,
    day_cmd.days,
    sync_cmd.export_,
    sync_cmd.import_,
    sync_cmd.state,
    sync_cmd.digest,
    sync_cmd.verify_command,
    daemon_cmd.run_command,
    daemon_cmd.status,
    daemon_cmd.peers,
    cloud_cmd.cloud,
):
    cli.add_command(command)
for command in (lifecycle_cmd.store_renew, lifecycle_cmd.store_resolve_fork):
    setup_cmd.store.add_command(command)


from lanesync.cli import sim_cmd  # noqa: E402 - kept beside its registration

cli.add_command(sim_cmd.sim)


from lanesync.cli import bench_cmd  # noqa: E402 - kept beside its registration

cli.add_command(bench_cmd.bench)


def main() -> None:
    cli()
