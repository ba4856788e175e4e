"""``chat_many(mode="batch")`` against the demo's Batch API (and a fake one for odd output)."""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _servers import RecordedRequest, ReplayServer, Reply
from PIL import Image, ImageDraw

import jupyter_chatimg as ci
from jupyter_chatimg import _jobs
from jupyter_chatimg.demo import DemoServer, serve_demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo(clean_env: pytest.MonkeyPatch) -> Iterator[DemoServer]:
    with serve_demo() as server:
        yield server


def card(colour: str) -> Image.Image:
    img = Image.new("RGB", (96, 64), "white")
    ImageDraw.Draw(img).ellipse((20, 10, 70, 54), fill=colour)
    return img


def items() -> list[Any]:
    return [
        "what is 6 * 7?",
        ("Describe the picture.", card("red")),
        ("Describe the picture.", card("navy")),
        "hello there",
        ("What colour is the shape?", [card("gold"), card("green")]),
    ]


def test_batch_mode_gives_the_texts_of_live_mode_and_splits_big_jobs(
    demo: DemoServer, tmp_path: Path
) -> None:
    kw: dict[str, Any] = dict(base_url=demo.url, model="demo-vision", display=False, max_tokens=60)
    live = ci.chat_many(items(), **kw)
    assert all(r.ok for r in live)
    before = demo.batches_created
    journal = tmp_path / "job.jsonl"
    batch = ci.chat_many(items(), journal=journal, mode="batch", batch_max_requests=2, **kw)
    assert [r.text for r in batch] == [r.text for r in live]
    assert [r.usage for r in batch] == [r.usage for r in live]
    assert demo.batches_created == before + 3  # 5 requests, at most 2 per batch
    assert set(demo.batch_answers.values()) == {1}
    status = ci.batch_status(journal)
    assert status.finished == 5 and status.total == 5 and not status.running
    assert [b.status for b in status.batches] == ["completed"] * 3
    assert "3 batches" in repr(status)
    # Running again reads everything back: nothing is submitted.
    again = ci.chat_many(items(), journal=journal, mode="batch", **kw)
    assert [r.text for r in again] == [r.text for r in live]
    assert demo.batches_created == before + 3


def test_the_bytes_limit_splits_too(demo: DemoServer, tmp_path: Path) -> None:
    prompts = [f"item {i}: {'x' * 300}" for i in range(6)]
    before = demo.batches_created
    results = ci.chat_many(
        prompts,
        base_url=demo.url,
        model="demo-vision",
        display=False,
        journal=tmp_path / "j.jsonl",
        mode="batch",
        batch_max_bytes=1000,
    )
    assert all(r.ok for r in results)
    assert demo.batches_created - before >= 3


def _run_in_child(script: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATIMG_"))}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd=ROOT)


def _wait_for_batch_line(journal: Path, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and b'"batch":' in journal.read_bytes():
            return
        assert child.poll() is None, "the child ended before recording its batch"
        time.sleep(0.01)
    raise AssertionError("no batch recorded in the journal")


def test_killing_the_waiting_process_and_running_again_resumes_the_same_batch(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prompts = [f"what is {i} + {i}?" for i in range(20)]
    with serve_demo(batch_delay=0.05) as demo:
        live = ci.chat_many(prompts, base_url=demo.url, model="demo-vision", display=False)
        journal = tmp_path / "job.jsonl"
        child = _run_in_child(
            f"""
            import jupyter_chatimg as ci
            ci.chat_many({prompts!r}, base_url={demo.url!r}, model="demo-vision", display=False,
                         journal={str(journal)!r}, mode="batch")
            """
        )
        try:
            _wait_for_batch_line(journal, child)
            child.send_signal(signal.SIGKILL)
            child.wait(10)
        finally:
            if child.poll() is None:
                child.kill()
        assert demo.batches_created == 1
        assert ci.batch_status(journal).running
        results = ci.chat_many(
            prompts,
            base_url=demo.url,
            model="demo-vision",
            display=False,
            journal=journal,
            mode="batch",
        )
        assert [r.text for r in results] == [r.text for r in live]
        assert demo.batches_created == 1  # the same batch: the list did not grow
        assert len(demo.batch_answers) == 20 and set(demo.batch_answers.values()) == {1}


def test_interrupting_stops_only_the_waiting(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = [f"p{i}" for i in range(10)]
    journal = tmp_path / "job.jsonl"
    with serve_demo(batch_delay=0.1) as demo:
        timer = threading.Timer(0.6, _thread.interrupt_main)
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                ci.chat_many(
                    prompts, base_url=demo.url, model="demo-vision", journal=journal, mode="batch"
                )
        finally:
            timer.cancel()
        err = capsys.readouterr().err
        assert "stopped waiting; the batch (batch_" in err
        assert "ci.batch_cancel('job.jsonl')" in err
        assert ci.batch_status(journal).running
        cancelled = ci.batch_cancel(journal)
        assert cancelled.batches[0].status in ("cancelling", "cancelled")
        results = ci.chat_many(
            prompts,
            base_url=demo.url,
            model="demo-vision",
            display=False,
            journal=journal,
            mode="batch",
        )
        err = capsys.readouterr().err
        done = [r for r in results if r.ok]
        assert 0 < len(done) < 10  # what finished before the cancel is kept
        assert "was cancelled after" in err and err.count("\n") == 1
        assert demo.batches_created == 1
        # A third run sends the rest in a new batch.
        last = ci.chat_many(
            prompts,
            base_url=demo.url,
            model="demo-vision",
            display=False,
            journal=journal,
            mode="batch",
        )
        assert all(r.ok for r in last) and demo.batches_created == 2


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ("batch-fail", "failed at the server: demo fault: injected batch failure"),
        ("batch-expire=2", "expired after 2 of 4 requests: the finished ones are kept"),
    ],
)
def test_a_failed_or_expired_batch_is_one_line(
    demo: DemoServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fault: str,
    expect: str,
) -> None:
    real = _jobs.wire.create_body

    def with_fault(file_id: str, metadata: Any = None) -> dict[str, Any]:
        return real(file_id, {**(metadata or {}), "demo_fault": fault})

    monkeypatch.setattr(_jobs.wire, "create_body", with_fault)
    results = ci.chat_many(
        ["a", "b", "c", "d"],
        base_url=demo.url,
        model="demo-vision",
        display=False,
        journal=tmp_path / "j.jsonl",
        mode="batch",
    )
    err = capsys.readouterr().err
    assert expect in err and err.count("\n") == 1, err
    ok = [r.ok for r in results]
    assert ok == ([False] * 4 if fault == "batch-fail" else [True, True, False, False])


def test_batch_mode_needs_a_journal(demo: DemoServer) -> None:
    with pytest.raises(ci.ConfigError, match='mode="batch" needs journal='):
        ci.chat_many(["a"], base_url=demo.url, model="demo-vision", mode="batch")
    with pytest.raises(ci.ConfigError, match="mode"):
        ci.chat_many(["a"], base_url=demo.url, model="demo-vision", mode="later")


class FakeBatchAPI:
    """Files and batches whose output names an unknown id and leaves one item out."""

    def __init__(self, server: ReplayServer) -> None:
        self.uploaded = b""
        server.add_handler("POST", "/v1/files", self.upload)
        server.add_handler("POST", "/v1/batches", self.create)
        server.add_handler("GET", "/v1/batches/batch_x", self.get)
        server.add_handler("GET", "/v1/files/file-out/content", self.output)

    @staticmethod
    def json(obj: Any) -> Reply:
        return Reply(headers={"Content-Type": "application/json"}, body=json.dumps(obj).encode())

    def upload(self, request: RecordedRequest) -> Reply:
        self.uploaded = request.body
        return self.json({"id": "file-in", "object": "file", "purpose": "batch"})

    def create(self, request: RecordedRequest) -> Reply:
        return self.json({"id": "batch_x", "status": "validating", "input_file_id": "file-in"})

    def get(self, request: RecordedRequest) -> Reply:
        return self.json(
            {
                "id": "batch_x",
                "status": "completed",
                "input_file_id": "file-in",
                "output_file_id": "file-out",
                "error_file_id": None,
                "request_counts": {"total": 3, "completed": 2, "failed": 0},
            }
        )

    def output(self, request: RecordedRequest) -> Reply:
        def line(cid: str, text: str) -> dict[str, Any]:
            body = {
                "id": "c",
                "object": "chat.completion",
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
            }
            return {"custom_id": cid, "response": {"status_code": 200, "body": body}}

        rows = [line("item-2", "two"), line("someone-else", "?"), line("item-0", "zero")]
        data = "".join(json.dumps(r) + "\n" for r in rows).encode()
        return Reply(headers={"Content-Type": "application/octet-stream"}, body=data)


def test_output_lines_any_order_unknown_ids_one_line_missing_items_failed(
    clean_env: pytest.MonkeyPatch,
    replay_server: ReplayServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeBatchAPI(replay_server)
    results = ci.chat_many(
        ["a", "b", "c"],
        base_url=replay_server.url,
        display=False,
        journal=tmp_path / "j.jsonl",
        mode="batch",
        model="m",
    )
    assert [r.text for r in results] == ["zero", "", "two"]
    assert "returned no line for this item" in str(results[1].error)
    err = capsys.readouterr().err
    assert "1 line of batch batch_x's output name no item of this job" in err
    assert "'someone-else'" in err and err.count("\n") == 1
    sent = [json.loads(x) for x in fake.uploaded.split(b"\r\n\r\n", 2)[2].splitlines()[:3]]
    assert [s["custom_id"] for s in sent] == ["item-0", "item-1", "item-2"]
    assert {s["url"] for s in sent} == {"/v1/chat/completions"}
    assert all("stream" not in s["body"] for s in sent)
