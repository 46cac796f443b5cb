"""What the long-running processes log, and at which level (docs/reference/logs.md).

Levels mean something an operator can act on: ``error``, this process can no longer do its job
as it should (storage failed, this terminal is revoked, a peer refused it as revoked);
``warning``, something is wrong elsewhere and sales may not reach everyone (the link to the
cloud lost, a peer refused or misbehaving, the cloud unreachable); ``info``, routine life (start,
stop, peers connecting and leaving); ``debug``, internals that are only noise in a store
(duplicate connections closed by design, mDNS announcements ignored).

The node (``core.node``) reports its events as a name and fields (``peer.connected``,
``peer.closed``, ``peer.violation``); ``node_event`` gives each its level and, where a person
has something to understand, a plain sentence after the fields.
"""

from __future__ import annotations

import logging
from typing import Any

from lanesync.core.ids import CLOUD_TERMINAL_ID
from lanesync.core.link import DUPLICATE_CONNECTION

# ``--log-level`` of ``run`` and ``cloud serve``: the least severe level printed.
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
DEFAULT_LOG_LEVEL = "info"
# The prefix of the reason ``core.connection`` gives when the other end sent a refusal.
REFUSED_BY_PEER = "refused by peer: "


def node_event(event: str, fields: dict[str, Any]) -> tuple[int, str]:
    """The level and the message of a node event: the event name, its fields as key=value
    (stable, for grep), and for warnings a plain sentence saying what it means."""
    text = " ".join([event, *(f"{k}={v}" for k, v in fields.items())])
    if event == "peer.violation":
        return logging.WARNING, f"{text}: a peer sent what the protocol forbids; it was cut off"
    if event != "peer.closed":
        return logging.INFO, text
    reason = str(fields.get("reason", ""))
    peer = fields.get("peer")
    if reason == DUPLICATE_CONNECTION:
        return logging.DEBUG, text  # two lanes dialled each other; one link is kept, by design
    if reason.startswith(REFUSED_BY_PEER):
        return logging.WARNING, f"{text}: the peer refused this terminal"
    if peer == CLOUD_TERMINAL_ID and fields.get("by_peer"):
        return (
            logging.WARNING,
            f"{text}: the link to the cloud is lost; sales wait on this lane until it is back",
        )
    if peer is None and not fields.get("by_peer"):
        return logging.WARNING, f"{text}: this lane refused the connection"
    return logging.INFO, text
