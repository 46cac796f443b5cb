"""``lanesync bench compare OLD.json NEW.json``: ratios new/old of every figure, flagging a
change only when it lies outside the run-to-run spread.

A figure changed when the [min, max] ranges of its repeats in the two runs do not overlap.
With a single repeat on either side there is no measured spread; single runs on the 2-core
test machine varied by +-20 % (2026-11-26), so then only a change beyond that band is flagged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_NOISE = 0.20


class CompareError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class FigureChange:
    scenario: str
    figure: str
    system: str
    unit: str
    old: float
    new: float
    ratio: float
    verdict: str  # "", "better", "worse"


def load(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except OSError as exc:
        raise CompareError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise CompareError(f"{path} is not JSON") from None
    if data.get("schema") != "lanesync-bench/1":
        raise CompareError(f"{path} is not a results.json of lanesync bench")
    return data


def _changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    if old.get("n", 0) > 1 and new.get("n", 0) > 1:
        return bool(new["min"] > old["max"] or new["max"] < old["min"])
    base = abs(float(old["median"])) or 1e-12
    return abs(float(new["median"]) - float(old["median"])) / base > DEFAULT_NOISE


def compare(old: dict[str, Any], new: dict[str, Any]) -> list[FigureChange]:
    rows = []
    for scenario, data in new["scenarios"].items():
        before = {
            f["name"]: f for f in old.get("scenarios", {}).get(scenario, {}).get("figures", [])
        }
        for figure in data["figures"]:
            previous = before.get(figure["name"])
            if previous is None:
                continue
            for system, spread in figure["systems"].items():
                was = previous["systems"].get(system)
                if not was or was.get("median") is None or spread.get("median") is None:
                    continue
                ratio = spread["median"] / was["median"] if was["median"] else float("inf")
                verdict = ""
                if _changed(was, spread):
                    higher = spread["median"] > was["median"]
                    good = higher == (figure["better"] == "higher")
                    verdict = "better" if good else "worse"
                rows.append(
                    FigureChange(
                        scenario,
                        figure["name"],
                        system,
                        figure["unit"],
                        float(was["median"]),
                        float(spread["median"]),
                        ratio,
                        verdict,
                    )
                )
    return rows
