"""Every benchmark runs once on a tiny size, so that none of them can rot.

No timing assertions: the numbers of a tiny run mean nothing. What is checked is
that each benchmark runs to the end and reports well-formed rows, and that the
runner writes its table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import run as runner

KEYS = {"what", "baseline", "value", "ratio", "target", "ok"}


@pytest.mark.parametrize("name", sorted(runner.available()))
def test_benchmark_runs_small(name: str, clean_env: pytest.MonkeyPatch) -> None:
    rows = runner.available()[name](True)
    assert rows, f"{name} reported nothing"
    for row in rows:
        assert set(row) == KEYS
        assert row["ok"] in (True, False, None)
        assert all(isinstance(row[k], str) and row[k] for k in KEYS - {"ok"}), row
        assert "failed" not in row["what"]


def test_runner_writes_a_table(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> None:
    out = tmp_path / "results.md"
    assert runner.main(["--small", "--only", "parser", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| what | baseline (same run) |" in text
    assert "stream parser" in text
    assert "Python " in text and "CPU:" in text


def test_bench_server_paces_and_records(clean_env: pytest.MonkeyPatch) -> None:
    import httpx

    from benchmarks._server import BenchServer, sse_events

    events = sse_events(["a", "b", "c"])
    with BenchServer() as srv:
        sent = srv.set_reply(events, pauses={1: 0.01})
        with httpx.Client() as client:
            body = client.post(srv.url + "/chat/completions", content=b"{}").content
    assert body == b"".join(events)
    assert set(sent) == {1}
