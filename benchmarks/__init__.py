"""Benchmarks: ``python -m benchmarks`` runs them all and writes ``benchmarks/RESULTS.md``.

Each ``bench_*`` module has ``run(small: bool) -> list[dict]``; a row is
``{"what", "baseline", "value", "ratio", "target", "ok"}`` (``ok`` is None for
rows that only report). ``small=True`` runs a tiny size (for the test that keeps
them from rotting); the numbers then mean nothing.
"""
