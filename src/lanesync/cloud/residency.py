"""How many stores a ``cloud serve`` process holds in memory, and for how long (the defaults of
``cloud serve --idle-s`` and ``--max-resident``; ``CloudService`` applies them). Kept apart so
the CLI reads them without importing the service.
"""

from __future__ import annotations

# How long a store with no leader connected and no head-office request stays resident (``cloud
# serve --idle-s``). A lane's uplink redials within seconds of a drop (shell.dialing backoff) and
# the leader keeps its link open while it leads, so a store idle for five minutes has no leader
# here: its replica is freed, and reopening it on the next hello costs one load (see
# docs/how-to/cloud.md, section 2, for the measured figure).
DEFAULT_IDLE_S = 300.0
# The longest ``--idle-s`` taken: 30 days is "never" for a store whose leader stays connected
# while it sells; a finite bound keeps an infinite one away from the event loop's timers.
MAX_IDLE_S = 30 * 86_400.0
# At most this many replicas resident per process (``cloud serve --max-resident``). A chain's
# process serves a few hundred active stores at once (docs/how-to/cloud.md, section 8); five
# times that leaves room for stores idle but not yet evicted, so the bound refuses a leader
# only when a process is really overloaded, and still caps its memory.
DEFAULT_MAX_RESIDENT = 1000
