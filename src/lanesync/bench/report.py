"""``report.md``: one table per scenario, every figure as median [min - max] over repeats."""

from __future__ import annotations

import math
from typing import Any

from lanesync.bench.cluster import LANESYNC

SHORT = {
    "lanesync-unsigned": "unsigned",
    "pycrdt-websocket": "pycrdt-ws",
    "naive-broadcast": "naive",
}


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    if unit == "s":
        return f"{value:.2f}"
    if unit in ("B", "sales/s", "updates/s", "count"):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def cell(spread: dict[str, Any], unit: str) -> str:
    median = spread.get("median")
    if median is None:
        return "-"
    text = fmt(median, unit)
    low, high = spread.get("min"), spread.get("max")
    if spread.get("n", 0) > 1 and low is not None and high is not None and low != high:
        text += f" [{fmt(low, unit)}-{fmt(high, unit)}]"
    return text


def ratio(value: float) -> str:
    return f"{value:.2f}x" if abs(value) >= 0.1 else f"{value:.2g}x"


def ratio_cell(spread: dict[str, Any] | None) -> str:
    if not spread or spread.get("median") is None:
        return "-"
    text = ratio(spread["median"])
    if spread.get("n", 0) > 1 and spread["min"] != spread["max"]:
        text += f" [{ratio(spread['min'])}-{ratio(spread['max'])}]"
    return text


def scenario_table(data: dict[str, Any]) -> list[str]:
    systems: list[str] = data["systems"]
    baselines = [s for s in systems if s != LANESYNC]
    header = ["figure", *systems]
    if LANESYNC in systems:
        header += [f"lanesync / {SHORT.get(b, b)}" for b in baselines]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in data["figures"]:
        unit = figure["unit"]
        arrow = "lower is better" if figure["better"] == "lower" else "higher is better"
        row = [f"{figure['name']} ({unit}; {arrow})"]
        row += [cell(figure["systems"].get(s, {}), unit) for s in systems]
        if LANESYNC in systems:
            row += [ratio_cell(figure["ratios"].get(b)) for b in baselines]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def checks_lines(data: dict[str, Any]) -> list[str]:
    out = []
    for system, check in data["checks"].items():
        converged = "yes" if all(check["converged"]) else f"NO ({check['converged']})"
        out.append(
            f"- {system}: converged {converged}; acknowledged sales lost: "
            f"{', '.join(str(n) for n in check['lost_sales'])}"
        )
    return out


def config_line(config: dict[str, Any]) -> str:
    """The run's settings: the scenarios' common ones, or a study's own options."""
    if "latency_ms" not in config:
        options = {k: v for k, v in config.items() if k not in ("scenarios", "systems")}
        return "- options: " + ", ".join(f"{k} {v}" for k, v in options.items())
    return (
        f"- {config['lanes']} lanes, {config['rate']:g} sales/s store-wide, "
        f"{config['duration_s']:g} s per step, proxy latency {config['latency_ms']:g} ms, "
        f"jitter {config['jitter_ms']:g} ms, loss {config['loss_pct']:g} %, "
        f"{config['repeat']} repeat(s), seed {config['seed']}"
    )


def render(results: dict[str, Any], plots: dict[str, list[str]]) -> str:
    machine = results["machine"]
    config = results["config"]
    git = results["git"]
    guess, wall = results.get("estimated_seconds"), results.get("wall_seconds")
    estimated = "" if wall is None else f", the whole command {wall:g} s"
    estimated += "" if guess is None else f" (estimated beforehand: {guess:g} s)"
    lines = [
        f"# lanesync bench: {', '.join(config['scenarios'])}",
        "",
        f"- command: `{results['command']}`",
        f"- started {results['started']}, took {results.get('seconds', '?')} s{estimated}",
        f"- machine: {machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['platform']}, "
        f"Python {machine['python']}, SQLite {machine['sqlite']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        f"- git commit {git['commit']}{' (with uncommitted changes)' if git['dirty'] else ''}",
        f"- load average (1, 5, 15 min) before {results['load_average_before']}, "
        f"after {results.get('load_average_after')}",
        config_line(config),
        "",
        "Cells: median over repeats, [min-max] when they differ. Ratios: lanesync's value over "
        "the baseline's, per repeat (below 1 means lanesync is lower).",
    ]
    for scenario, data in results["scenarios"].items():
        lines += ["", f"## {scenario}", "", *scenario_table(data)]
        if data["checks"]:
            lines += ["", "Checks:", "", *checks_lines(data)]
        for plot in plots.get(scenario, []):
            lines += ["", f"![{scenario}]({plot})"]
    for skip in results.get("skipped", []):
        lines.append(f"\n_{skip['scenario']}: {skip['system']} not run ({skip['why']})._")
    return "\n".join(lines) + "\n"
