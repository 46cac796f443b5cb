"""PNG plots (matplotlib, Agg): latency CDF, throughput vs lanes, convergence time vs split
size, bytes per sale by system."""

from __future__ import annotations

import importlib
import re
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


def make_plots(results: dict[str, Any], directory: Path) -> dict[str, list[str]]:
    """Write every plot the results allow; returns, per scenario, paths relative to the
    report."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[str]] = {}

    def save(fig: Any, name: str, scenario: str) -> None:
        fig.tight_layout()
        fig.savefig(directory / name, dpi=110)
        plt.close(fig)
        made.setdefault(scenario, []).append(f"{directory.name}/{name}")

    for scenario, data in results["scenarios"].items():
        cdfs = data.get("latency_cdf_ms") or {}
        if cdfs:
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for system, cdf in cdfs.items():
                xs = [max(p[0], 1e-3) for p in cdf["cdf"]]
                ax.plot(xs, [p[1] for p in cdf["cdf"]], label=system, color=COLORS.get(system))
            ax.set_xscale("log")
            ax.set_xlabel("propagation latency, ack on the selling lane -> accepted elsewhere (ms)")
            ax.set_ylabel("fraction of (sale, receiver) pairs")
            ax.set_title(f"{scenario}: latency CDF")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
            save(fig, f"latency-cdf-{scenario}.png", scenario)

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
            ax.set_title("throughput vs lanes")
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
            ax.set_title("split-heal: convergence time vs split size")
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
                ax.set_title(f"{scenario}: {figure['name']}", fontsize=9)
                for i, v in enumerate(values):
                    ax.annotate(f"{v:,.0f}", (i, v), ha="center", va="bottom", fontsize=8)
                save(fig, f"bytes-per-sale-{scenario}.png", scenario)
    return made
