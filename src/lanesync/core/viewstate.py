"""The views' state as a checkpoint carries it: which part goes where in the list
``Views.export_views`` gives, and the checks that a checkpoint's views fit the views that take
them (same revocations, same fork resolutions and closures).

Each part gives its own plain-value form (``Chains``, ``Uncounted``, ``Tally``, ``Trust``,
``StoreActions``); this module only puts them in order and takes them apart again, so the layout
is in one place. Changing it needs a new ``core.checkpoint.CHECKPOINT_FORMAT``.
"""

from __future__ import annotations

from typing import Any

from lanesync.core.chains import Chains
from lanesync.core.storeactions import StoreActions
from lanesync.core.tally import Tally
from lanesync.core.trust import Trust
from lanesync.core.uncounted import Entry, Uncounted


def export_views(
    chains: Chains, uncounted: Uncounted, tally: Tally, trust: Trust, actions: StoreActions
) -> list[Any]:
    """Every view as plain msgpack-able values (``load_views`` reverses it)."""
    return [
        chains.export(),
        *uncounted.export(),
        *tally.export(),
        trust.export_revocations(),
        actions.export(),
    ]


def load_views(
    views: Any,
    chains: Chains,
    uncounted: Uncounted,
    tally: Tally,
    trust: Trust,
    actions: StoreActions,
) -> list[Entry]:
    """Take what ``export_views`` gave into empty ``chains``, ``uncounted`` and ``tally``, judged
    under ``trust``'s revocations and ``actions``; returns every entry held but not counted, for
    the owner to judge again from its documents. Raises ``ValueError`` when the views do not
    decode or were made under other revocations or store actions."""
    try:
        (
            exported_chains,
            unverified,
            rejected,
            unauthorized,
            on_hand,
            voids,
            prices,
            accepted,
            closed,
            revoked,
            exported_actions,
        ) = views
        if revoked != trust.export_revocations():
            raise ValueError("the checkpoint was made under other revocations")
        if exported_actions != actions.export():
            raise ValueError("the checkpoint was made under other fork resolutions")
        held = chains.load(exported_chains)
        held.extend(uncounted.load(unverified, rejected, unauthorized))
        tally.load(on_hand, voids, prices, accepted, closed)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"the checkpoint's views do not decode: {exc}") from exc
    return held
