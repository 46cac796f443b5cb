"""Studies: single-purpose measurements that were scripts in ``benchmarks/``, each a ``lanesync
bench`` subcommand: ``foundation`` (one terminal against raw pycrdt), ``receive-path`` (CPU per
received record), ``mesh`` (lane processes against pycrdt-websocket), ``cloud`` (WAN catch-up
and failover) and ``cloud-ingest`` (many stores into SQLite or PostgreSQL).

Unlike the scenarios, a study does not run every system through one store workflow: each has
its own setup, processes and figures (``foundation*``, ``receive_path``, ``mesh*``, ``cloud*``,
``ingest*``). Every study writes the same ``results.json`` (schema ``lanesync-bench/1``, so
``lanesync bench compare`` reads it) and ``report.md`` as the scenarios, through
``common.StudyRun``.
"""
