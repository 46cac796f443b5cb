"""How many inputs each fuzz target was fed in this pytest session (see conftest)."""

from __future__ import annotations

from collections import Counter

TRIED: Counter[str] = Counter()
