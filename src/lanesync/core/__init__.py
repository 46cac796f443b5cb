"""The pure core: records, identity, replicated state and views.

Nothing here performs I/O or reads the clock: time is passed in as ``now_ms`` and bytes in and
out are plain values. The shell (``lanesync.shell``) pumps them to disk and, later, the network.
"""
