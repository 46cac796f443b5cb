"""PNG plots (matplotlib, Agg): latency CDF, the throughput ladder (p99 latency by offered
rate), throughput vs lanes, convergence time vs split size, bytes per sale by system.

Every title ends with the run's lane count and store-wide rate, and every PNG carries its
title in its metadata (``Title``), so a plot copied out of its report still says what it shows.
"""

from __future__ import annotations

import importlib
import math
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLORS = {
    "lanesync": "#1f77b4",
    "lanesync-unsigned": "#17becf",
    "pycrdt-websocket": "#ff7f0e",
    "naive-broadcast": "#d62728",
}


def _pyplot() -> Any:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _median_by(data: dict[str, Any], pattern: str) -> dict[str, list[tuple[float, float]]]:
    """Per system, (x, median) for figures whose name matches ``pattern`` (group 1 = x)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for figure in data["figures"]:
        match = re.fullmatch(pattern, figure["name"])
        if match is None:
            continue
        x = float(match.group(1))
        for system, spread in figure["systems"].items():
            if spread.get("median") is not None:
                out.setdefault(system, []).append((x, float(spread["median"])))
    return {s: sorted(v) for s, v in out.items()}


def conditions(results: dict[str, Any], data: dict[str, Any]) -> str:
    """The lane count and rate of a scenario's run: "N lanes, R sales/s" ("2-8 lanes" for scale)."""
    config = results["config"]
    counts = sorted(
        {
            int(match.group(1))
            for figure in data["figures"]
            if (match := re.search(r", (\d+) lanes$", figure["name"]))
        }
    ) or [int(config["lanes"])]
    lanes = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{lanes} lanes, {float(config['rate']):g} sales/s"


@dataclass(frozen=True, slots=True)
class Rung:
    """One offered rate of the ladder for one system: p99 propagation latency, the median over
    repeats, and whether every repeat kept that rate up."""

    rate: float
    p99_ms: float
    kept_up: bool


LADDER_LABELS = ("steady", "ladder", "retry")  # the steps of measure() the ladder plot shows


def ladder_points(data: dict[str, Any]) -> dict[int, dict[str, list[Rung]]]:
    """Per lane count and system, the rungs of the ladder, when a ladder ran: the steady step
    and every rung after it; of a rung tried twice (a retry), the last try."""
    runs = data.get("runs") or []
    steps_of = [(run, run["details"].get("steps") or []) for run in runs]
    if not any(s["label"] == "ladder" for _, steps in steps_of for s in steps):
        return {}
    last: dict[tuple[int, str, float, int], dict[str, Any]] = {}
    for run, steps in steps_of:
        for step in steps:
            if step["label"] in LADDER_LABELS:
                key = (int(step["lanes"]), run["system"], float(step["rate"]), run["repeat"])
                last[key] = step  # later steps at the same rate replace earlier ones
    tries: dict[tuple[int, str, float], list[dict[str, Any]]] = {}
    for (lanes, system, rate, _), step in last.items():
        tries.setdefault((lanes, system, rate), []).append(step)
    order = {system: i for i, system in enumerate(data.get("systems") or [])}
    out: dict[int, dict[str, list[Rung]]] = {}
    # systems in the run's order (lanesync first), as in the other plots' legends
    for (lanes, system, rate), steps in sorted(
        tries.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], len(order)), kv[0][2])
    ):
        p99s = [
            float(p)
            for s in steps
            if (p := s["latency_ms"].get("p99")) is not None and not math.isnan(float(p))
        ]
        if p99s:
            rung = Rung(rate, statistics.median(p99s), all(s["kept_up"] for s in steps))
            out.setdefault(lanes, {}).setdefault(system, []).append(rung)
    return out


def make_plots(results: dict[str, Any], directory: Path) -> dict[str, list[str]]:
    """Write every plot the results allow; returns, per scenario, paths relative to the
    report."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[str]] = {}

    def save(fig: Any, name: str, scenario: str) -> None:
        fig.tight_layout()
        title = fig.axes[0].get_title()
        fig.savefig(directory / name, dpi=110, metadata={"Title": title})
        plt.close(fig)
        made.setdefault(scenario, []).append(f"{directory.name}/{name}")

    for scenario, data in results["scenarios"].items():
        where = f" \N{EM DASH} {conditions(results, data)}"
        cdfs = data.get("latency_cdf_ms") or {}
        if cdfs:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for system, cdf in cdfs.items():
                xs = [max(p[0], 1e-3) for p in cdf["cdf"]]
                ax.plot(xs, [p[1] for p in cdf["cdf"]], label=system, color=COLORS.get(system))
            ax.set_xscale("log")
            ax.set_xlabel("propagation latency, ack on the selling lane -> accepted elsewhere (ms)")
            ax.set_ylabel("fraction of (sale, receiver) pairs")
            ax.set_title(f"{scenario}: latency CDF{where}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            save(fig, f"latency-cdf-{scenario}.png", scenario)

        ladders = ladder_points(data)
        for lanes, by_system in ladders.items():
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for system, rungs in by_system.items():
                color = COLORS.get(system)
                ax.plot(
                    [r.rate for r in rungs], [r.p99_ms for r in rungs], label=system, color=color
                )
                for marker, kept in (("o", True), ("x", False)):
                    chosen = [r for r in rungs if r.kept_up is kept]
                    if chosen:
                        ax.scatter(
                            [r.rate for r in chosen],
                            [r.p99_ms for r in chosen],
                            marker=marker,
                            color=color,
                        )
            ax.set_xscale("log")
            ax.set_yscale("log")
            # the rungs themselves as ticks, written plainly (not 2 x 10^2)
            rates = sorted({r.rate for rungs in by_system.values() for r in rungs})
            ax.set_xticks(rates, [f"{r:g}" for r in rates], fontsize=8)
            ax.tick_params(axis="x", which="minor", labelbottom=False)
            ax.set_xlabel("offered store-wide rate (sales/s); x: not kept up")
            ax.set_ylabel("propagation latency p99 (ms)")
            # the ladder climbs from --rate: the title names where it started
            at = f"{lanes} lanes, from {float(results['config']['rate']):g} sales/s"
            ax.set_title(f"{scenario}: throughput ladder \N{EM DASH} {at}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            # scale climbs once per lane count
            name = (
                f"ladder-{scenario}-{lanes}.png"
                if scenario == "scale"
                else f"ladder-{scenario}.png"
            )
            save(fig, name, scenario)

        series = _median_by(data, r"highest rate kept up, (\d+) lanes")
        if series:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for system, points in series.items():
                ax.plot(
                    *zip(*points, strict=True), marker="o", label=system, color=COLORS.get(system)
                )
            ax.set_xscale("log", base=2)
            ax.set_xlabel("lanes")
            ax.set_ylabel("highest store-wide sales/s kept up (within 1 s)")
            ax.set_title(f"{scenario}: throughput vs lanes{where}", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend()
            save(fig, "throughput-vs-lanes.png", scenario)

        series = _median_by(data, r"converge after heal, (\d+) split sales")
        if series:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for system, points in series.items():
                ax.plot(
                    *zip(*points, strict=True), marker="o", label=system, color=COLORS.get(system)
                )
            after = _median_by(data, r"converge after reconnect, (\d+) split sales")
            for system, points in after.items():
                ax.plot(
                    *zip(*points, strict=True),
                    marker="x",
                    linestyle="--",
                    label=f"{system}, from reconnect",
                    color=COLORS.get(system),
                )
            ax.set_xlabel("sales rung during the split")
            ax.set_ylabel("time to converged (s): from the heal, and from the reconnect")
            ax.set_title(f"{scenario}: convergence time vs split size{where}", fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend()
            save(fig, "convergence-vs-split.png", scenario)

        bars = [
            f
            for f in data["figures"]
            if f["name"].startswith("bytes per sale per receiver")
            or f["name"].startswith("heal bytes per split sale")
            or f["name"] in ("uplink bytes per outage sale", "join: bytes per day sale")
        ]
        if bars:
            figure = bars[-1]
            systems = [s for s, v in figure["systems"].items() if v.get("median") is not None]
            if systems:
                fig, ax = plt.subplots(figsize=(7, 4.5))
                values = [figure["systems"][s]["median"] for s in systems]
                ax.bar(systems, values, color=[COLORS.get(s, "grey") for s in systems])
                ax.set_yscale("log")
                ax.set_ylabel("bytes on the wire (B)")
                ax.set_title(f"{scenario}: {figure['name']}{where}", fontsize=9)
                for i, v in enumerate(values):
                    ax.annotate(f"{v:,.0f}", (i, v), ha="center", va="bottom", fontsize=8)
                save(fig, f"bytes-per-sale-{scenario}.png", scenario)
    return made
