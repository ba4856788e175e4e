"""``chat_many(journal=...)``: resume after SIGKILL, torn lines, other jobs, lazy items, tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _servers import RecordedRequest, ReplayServer, Reply
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg._journal import Journal
from jupyter_chatimg._result import BatchResults, ChatResult, Choice

CHAT = "/v1/chat/completions"
ROOT = Path(__file__).resolve().parents[1]


def completion(text: str) -> Reply:
    body = {
        "id": "chatcmpl-j",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    return Reply(
        headers={"Content-Type": "application/json"},
        body=json.dumps(body).encode(),
        chunk_sizes=(256, 512),
    )


def prompt_of(request: RecordedRequest) -> str:
    content = request.json["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p["type"] == "text")


class Counting:
    """Answers ``echo <prompt>`` after ``latency`` s and counts requests per prompt."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        prompt = prompt_of(request)
        with self.lock:
            self.seen[prompt] += 1
        if self.latency:
            time.sleep(self.latency)  # the model's latency, so that a kill lands mid-job
        return completion("echo " + prompt)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_sigkill_after_80_lines_then_resume_sends_no_finished_item_twice(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer, tmp_path: Path
) -> None:
    server = Counting(latency=0.02)
    replay_server.add_handler("POST", CHAT, server)
    journal = tmp_path / "job.jsonl"
    script = textwrap.dedent(
        f"""
        import jupyter_chatimg as ci
        ci.chat_many(
            (f"item {{i}}" for i in range(200)), concurrency=4, base_url={replay_server.url!r},
            stream=False, display=False, journal={str(journal)!r},
        )
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATIMG_"))}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 81:  # header + 80
                break
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    before = Journal.open(journal, None)
    finished = set(before.done)
    assert 80 <= len(finished) < 200, len(finished)
    sent_before = Counter(server.seen)

    results = ci.chat_many(
        (f"item {i}" for i in range(200)),
        concurrency=4,
        base_url=replay_server.url,
        stream=False,
        display=False,
        journal=journal,
    )
    assert [r.text for r in results] == [f"echo item {i}" for i in range(200)]
    assert all(r.ok for r in results)
    for i in finished:  # a finished item never reached the server again
        assert server.seen[f"item {i}"] == sent_before[f"item {i}"] == 1
    assert all(server.seen[f"item {i}"] >= 1 for i in range(200))
    # At most the items in flight when it was killed were sent twice.
    assert sum(server.seen.values()) - 200 <= 4 + 1
    assert len(Journal.open(journal, None).done) == 200


def test_a_torn_last_line_is_ignored_and_its_item_redone(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer, tmp_path: Path
) -> None:
    server = Counting()
    replay_server.add_handler("POST", CHAT, server)
    journal = tmp_path / "j.jsonl"
    kw: dict[str, Any] = dict(base_url=replay_server.url, stream=False, display=False)
    ci.chat_many([f"p{i}" for i in range(5)], journal=journal, **kw)
    raw = journal.read_bytes()
    last = raw.rstrip(b"\n").rfind(b"\n") + 1
    torn_index = json.loads(raw[last:])["i"]
    journal.write_bytes(raw[: last + 20])  # the last line cut mid-way, no newline
    again = ci.chat_many([f"p{i}" for i in range(5)], journal=journal, **kw)
    assert [r.text for r in again] == [f"echo p{i}" for i in range(5)]
    assert server.seen[f"p{torn_index}"] == 2
    assert sum(server.seen.values()) == 6
    assert all(isinstance(x, dict) for x in lines(journal))  # the torn piece is gone


def test_failed_items_are_sent_again_finished_ones_are_not(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer, tmp_path: Path
) -> None:
    calls: Counter[str] = Counter()

    def flaky(request: RecordedRequest) -> Reply:
        prompt = prompt_of(request)
        calls[prompt] += 1
        if prompt == "bad" and calls[prompt] == 1:
            body = json.dumps({"error": {"message": "no", "type": "x", "code": None}}).encode()
            return Reply(status=400, headers={"Content-Type": "application/json"}, body=body)
        return completion("echo " + prompt)

    replay_server.add_handler("POST", CHAT, flaky)
    journal = tmp_path / "j.jsonl"
    kw: dict[str, Any] = dict(base_url=replay_server.url, stream=False, display=False)
    first = ci.chat_many(["a", "bad", "c"], journal=journal, **kw)
    assert [r.ok for r in first] == [True, False, True]
    second = ci.chat_many(["a", "bad", "c"], journal=journal, **kw)
    assert [r.text for r in second] == ["echo a", "echo bad", "echo c"]
    assert calls == Counter({"a": 1, "bad": 2, "c": 1})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"items": ["x", "b", "c"]}, "other items (item 0 is not the same)"),
        ({"temperature": 0.5}, "other parameters (temperature differ)"),
        ({"model": "other-model"}, "another model (m; now other-model)"),
        ({"system": "Be brief."}, "other parameters (system differ)"),
    ],
)
def test_a_journal_for_another_job_is_one_line_naming_what_differs(
    clean_env: pytest.MonkeyPatch,
    replay_server: ReplayServer,
    tmp_path: Path,
    change: dict[str, Any],
    says: str,
) -> None:
    server = Counting()
    replay_server.add_handler("POST", CHAT, server)
    journal = tmp_path / "captions.jsonl"
    kw: dict[str, Any] = dict(base_url=replay_server.url, stream=False, display=False, model="m")
    ci.chat_many(["a", "b", "c"], journal=journal, **kw)
    items = change.pop("items", ["a", "b", "c"])
    sent = sum(server.seen.values())
    with pytest.raises(ci.ConfigError) as info:
        ci.chat_many(items, journal=journal, **{**kw, **change})
    message = str(info.value)
    assert says in message and "\n" not in message
    assert 'journal="captions-2.jsonl"' in message
    assert sum(server.seen.values()) == sent  # nothing was sent


def test_a_read_only_journal_path_is_one_line(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer, tmp_path: Path
) -> None:
    if os.geteuid() == 0:  # root writes through file modes: use a place no one can write
        path = Path("/proc/version")
        assert path.exists()
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        path = folder / "j.jsonl"
    with pytest.raises(ci.ConfigError) as info:
        ci.chat_many(["a"], base_url=replay_server.url, display=False, journal=path)
    message = str(info.value)
    assert "cannot be written" in message or "not a chat_many journal" in message
    assert "\n" not in message
    assert replay_server.requests_to(CHAT) == []


def test_not_a_journal_is_refused(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(ci.ConfigError, match="not a chat_many journal"):
        ci.chat_many(["a"], base_url="http://127.0.0.1:9/v1", display=False, journal=path)


def test_items_are_read_lazily_images_only_when_sent(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer, tmp_path: Path
) -> None:
    replay_server.add_handler("POST", CHAT, Counting(latency=0.01))
    paths = []
    for i in range(30):
        p = tmp_path / f"img{i}.png"
        Image.new("RGB", (8, 8), (i * 8, 0, 0)).save(p)
        paths.append(p)
    pulled: list[int] = []

    def gen() -> Any:
        for i, p in enumerate(paths):
            pulled.append(i)
            # never more than the workers' items ahead of what has reached the server
            assert i - len(replay_server.requests_to(CHAT)) <= 2 + 1
            yield str(p)

    results = ci.chat_many(
        gen(),
        prompt="What colour?",
        concurrency=2,
        base_url=replay_server.url,
        stream=False,
        display=False,
    )
    assert len(results) == 30 and all(r.ok for r in results)
    assert pulled == list(range(30))
    body = replay_server.requests_to(CHAT)[0].json
    kinds = [p["type"] for p in body["messages"][-1]["content"]]
    assert kinds == ["text", "image_url"]


def test_journal_lines_hold_no_key_and_images_as_files(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    journal = tmp_path / "draw.jsonl"
    results = ci.chat_many(
        ["a red circle"], model="demo-image", stream=False, display=False, journal=journal
    )
    assert results[0].images
    text = journal.read_text()
    assert "base64" not in text
    line = lines(journal)[1]
    name = line["r"]["choices"][0]["images"][0]
    assert (tmp_path / "draw.jsonl.d" / name).is_file()
    again = ci.chat_many(
        ["a red circle"], model="demo-image", stream=False, display=False, journal=journal
    )
    assert again[0].images[0].tobytes() == results[0].images[0].tobytes()


def test_to_pandas_rows_usage_and_schema_fields() -> None:
    pd = pytest.importorskip("pandas")
    from dataclasses import dataclass

    @dataclass
    class Caption:
        colour: str
        count: int

    ok = ChatResult(
        choices=[Choice(text="red", finish_reason="stop")],
        model="m",
        usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "cost": 0.5},
    )
    ok.parsed = Caption("red", 2)  # type: ignore[attr-defined]  # what schema= (issue 13) sets
    bad = ChatResult.failed(ci.RateLimitError("slow down", status=429))
    as_dict = ChatResult(choices=[Choice(text="{}")])
    as_dict.parsed = {"colour": "blue", "count": 1}  # type: ignore[attr-defined]
    frame = BatchResults([ok, bad, as_dict]).to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.index) == [0, 1, 2] and frame.index.name == "index"
    assert list(frame.columns[:8]) == [
        "text",
        "error",
        "finish_reason",
        "model",
        "images",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    ]
    assert frame.loc[0, "colour"] == "red" and frame.loc[0, "count"] == 2
    assert frame.loc[2, "colour"] == "blue"
    assert frame.loc[0, "cost"] == 0.5
    assert frame.loc[1, "error"] == "HTTP 429: slow down"
    assert frame["error"].isna().tolist() == [True, False, True]


def test_to_pandas_keeps_the_labels_of_a_series(
    clean_env: pytest.MonkeyPatch, replay_server: ReplayServer
) -> None:
    pd = pytest.importorskip("pandas")
    replay_server.add_handler("POST", CHAT, Counting())
    df = pd.DataFrame({"q": ["a", "b", "c"]}, index=["x", "y", "z"])
    results = ci.chat_many(df["q"], base_url=replay_server.url, stream=False, display=False)
    joined = df.join(results.to_pandas())
    assert joined["text"].tolist() == ["echo a", "echo b", "echo c"]


def test_package_exports_are_sorted_and_lazy() -> None:
    code = (
        "import sys, jupyter_chatimg as ci; "
        "assert ci.__all__ == sorted(ci.__all__); "
        "assert {'batch_status', 'batch_cancel', 'BatchResults'} <= set(ci.__all__); "
        "assert all(hasattr(ci, n) for n in ci.__all__ if n != 'ChatPanel'); "
        "assert not {'IPython', 'ipywidgets', 'pandas'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
