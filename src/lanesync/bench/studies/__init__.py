"""Studies: single-purpose measurements that were scripts in ``benchmarks/`` (``lanesync bench
foundation``, ``lanesync bench receive-path``).

Unlike the scenarios, a study does not run every system through one store workflow: each
measures one path of lanesync (the write path against raw pycrdt, the per-record receive path)
in the process that runs it, or in fresh subprocesses of its own. Every study writes the same
``results.json`` (schema ``lanesync-bench/1``, so ``lanesync bench compare`` reads it) and
``report.md`` as the scenarios, through ``common.StudyRun``.
"""
