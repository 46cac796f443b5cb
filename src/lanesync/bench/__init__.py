"""``lanesync bench``: real lane processes on loopback, behind fault-injecting proxies.

Every scenario runs lanesync and, in the same run, the baselines ``--systems`` names
(pycrdt-websocket as a star relay, a naive full-state broadcast, and lanesync with frame and
record signing turned off) on the same workload, and writes ``results.json``, ``report.md``
and PNG plots. See docs/reference/benchmarks.md. Nothing here is imported by the rest of lanesync.
"""
