"""The demo's Images API (/v1/images/generations and /v1/images/edits), over loopback HTTP,
with the official ``openai`` client and with raw httpx for the wire details."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from _demo import http, server  # noqa: F401 - fixtures
from PIL import Image, ImageChops, ImageDraw, ImageStat

from jupyter_chatimg.demo import DEMO_MODELS, DemoServer
from jupyter_chatimg.demo._colors import PALETTE

ROOT = Path(__file__).resolve().parents[1]
RED, BLUE = PALETTE["red"], PALETTE["blue"]
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def client(server: DemoServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="sk-test-demo", max_retries=0) as c:
        yield c


@pytest.fixture(autouse=True)
def no_warnings() -> Iterator[None]:
    """Every exchange here must pass without a warning (pydantic, openai, Pillow ...)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def decode(b64: str | None) -> Image.Image:
    assert b64
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def near(rgb: Any, target: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(rgb, target, strict=False))


def mad(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two images' RGB pixels."""
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def red_with_left_half_mask() -> tuple[Image.Image, Image.Image]:
    img = Image.new("RGB", (64, 48), RED)
    mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 47), fill=(0, 0, 0, 0))  # left half editable
    return img, mask


def form(fields: dict[str, str], files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """httpx keyword arguments for a multipart request."""
    return {
        "data": fields,
        "files": [
            (name, (f"{name}-{i}.png", data, "image/png")) for i, (name, data) in enumerate(files)
        ],
    }


# --- generations ------------------------------------------------------------------------------


def test_generate_gpt_image_draws_the_prompt(client: openai.OpenAI) -> None:
    r = client.images.generate(model="gpt-image-1", prompt=PROMPT)
    img = decode(r.data[0].b64_json).convert("RGB")
    assert img.size == (1024, 1024) and r.size == "1024x1024"
    assert near(img.getpixel((5, 5)), BLUE) and near(img.getpixel((512, 512)), RED)
    assert r.data[0].url is None and r.output_format == "png" and r.background == "opaque"
    assert r.quality in ("low", "medium", "high")
    assert r.usage is not None and r.usage.output_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.text_tokens > 0


def test_generate_stream_partials_sharpen_towards_the_final(client: openai.OpenAI) -> None:
    whole = decode(client.images.generate(model="gpt-image-1", prompt=PROMPT).data[0].b64_json)
    events = list(
        client.images.generate(model="gpt-image-1", prompt=PROMPT, stream=True, partial_images=2)
    )
    assert [e.type for e in events] == [
        "image_generation.partial_image",
        "image_generation.partial_image",
        "image_generation.completed",
    ]
    partials = [decode(e.b64_json) for e in events[:2]]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
    final = decode(events[-1].b64_json)
    assert final.tobytes() == whole.tobytes()  # the same image as without streaming
    distances = [mad(p, final) for p in partials]
    assert distances[0] > distances[1] > 0  # honest coarse-to-fine previews
    assert all(p.size == final.size for p in partials)
    done = events[-1]
    assert done.usage.output_tokens > 0 and done.size == "1024x1024"  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [0, 3])
def test_partial_image_count(http: httpx.Client, count: int) -> None:
    body = {"model": "gpt-image-1.5", "prompt": "two green stars", "size": "1024x1536"}
    r = http.post("/images/generations", json={**body, "stream": True, "partial_images": count})
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = [f for f in r.text.split("\n\n") if f.strip()]
    names = [f.splitlines()[0] for f in frames]
    assert names == ["event: image_generation.partial_image"] * count + [
        "event: image_generation.completed"
    ]
    data = [json.loads(f.splitlines()[1].removeprefix("data: ")) for f in frames]
    assert {d["size"] for d in data} == {"1024x1536"}
    assert decode(data[-1]["b64_json"]).size == (1024, 1536)
    finals = [decode(d["b64_json"]) for d in data]
    dist = [mad(p, finals[-1]) for p in finals]
    assert all(a > b for a, b in itertools.pairwise(dist))
    assert "[DONE]" not in r.text


def test_output_formats_and_transparency(client: openai.OpenAI) -> None:
    jpeg = client.images.generate(
        model="gpt-image-1", prompt=PROMPT, output_format="jpeg", output_compression=80
    )
    raw = base64.b64decode(jpeg.data[0].b64_json or "")
    assert raw[:3] == b"\xff\xd8\xff" and jpeg.output_format == "jpeg"
    webp = client.images.generate(model="demo-image", prompt=PROMPT, output_format="webp")
    assert decode(webp.data[0].b64_json).format == "WEBP"
    clear = client.images.generate(
        model="gpt-image-1", prompt="a red star", background="transparent"
    )
    img = decode(clear.data[0].b64_json)
    assert clear.background == "transparent" and img.mode == "RGBA"
    assert img.getpixel((0, 0))[3] == 0 and img.getpixel((512, 512))[3] == 255  # type: ignore[index]


def test_demo_image_sizes_and_revised_prompt(client: openai.OpenAI) -> None:
    r = client.images.generate(model="demo-image", prompt="three yellow hearts", size="320x200")
    assert decode(r.data[0].b64_json).size == (320, 200)
    assert "yellow" in (r.data[0].revised_prompt or "")
    auto = client.images.generate(model="demo-image", prompt="a blue square 300x100")
    assert decode(auto.data[0].b64_json).size == (300, 100)  # size from the prompt
    two = client.images.generate(model="gpt-image-1", prompt="a wide picture of a ring", n=2)
    assert len(two.data) == 2 and two.size == "1536x1024"


def test_dalle_replies_url_and_revised_prompt(client: openai.OpenAI, server: DemoServer) -> None:
    r = client.images.generate(model="dall-e-3", prompt="a green triangle")
    item = r.data[0]
    assert item.url and item.url.startswith(f"http://127.0.0.1:{server.port}/v1/files/")
    assert (
        item.b64_json is None
        and r.usage is None
        and "green triangle" in (item.revised_prompt or "")
    )
    got = httpx.get(item.url, timeout=10)
    assert got.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(got.content)).convert("RGB")
    assert img.size == (1024, 1024) and near(img.getpixel((512, 600)), PALETTE["green"])
    b64 = client.images.generate(
        model="dall-e-2", prompt="a green triangle", response_format="b64_json", size="256x256"
    )
    assert decode(b64.data[0].b64_json).size == (256, 256) and b64.data[0].revised_prompt is None


# --- edits ------------------------------------------------------------------------------------


def test_edit_with_mask_changes_only_the_transparent_area(client: openai.OpenAI) -> None:
    img, mask = red_with_left_half_mask()
    r = client.images.edit(
        model="gpt-image-1",
        image=("photo.png", png(img), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt="grayscale",
    )
    out = decode(r.data[0].b64_json).convert("RGB")
    assert out.size == (64, 48)
    left, right = out.getpixel((5, 20)), out.getpixel((60, 20))
    assert isinstance(left, tuple) and left[0] == left[1] == left[2]  # gray where editable
    assert near(right, RED, 0)  # untouched where the mask is opaque


def test_edit_without_mask_and_several_images(client: openai.OpenAI) -> None:
    img, _ = red_with_left_half_mask()
    blue = Image.new("RGB", (30, 30), BLUE)
    r = client.images.edit(
        model="demo-image",
        image=[("a.png", png(img), "image/png"), ("b.png", png(blue), "image/png")],
        prompt="invert it",
    )
    out = decode(r.data[0].b64_json).convert("RGB")
    assert out.size == (64, 48)
    assert near(out.getpixel((5, 5)), tuple(255 - c for c in RED), 0)  # type: ignore[arg-type]
    assert "first of the 2 images" in (r.data[0].revised_prompt or "")


def test_edit_draws_named_shapes_when_no_edit_is_named(client: openai.OpenAI) -> None:
    base = Image.new("RGB", (200, 200), "white")
    r = client.images.edit(
        model="demo-image", image=("w.png", png(base), "image/png"), prompt="add a blue circle"
    )
    out = decode(r.data[0].b64_json).convert("RGB")
    assert near(out.getpixel((100, 100)), BLUE) and near(out.getpixel((2, 2)), (255, 255, 255))


def test_edit_stream_events(client: openai.OpenAI) -> None:
    photo = Image.linear_gradient("L").resize((128, 96)).convert("RGB")
    events = list(
        client.images.edit(
            model="gpt-image-1",
            image=("g.png", png(photo), "image/png"),
            prompt="mirror it",
            stream=True,
            partial_images=2,
        )
    )
    assert [e.type for e in events] == [
        "image_edit.partial_image",
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    final = decode(events[-1].b64_json)
    assert final.tobytes() == photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    dist = [mad(decode(e.b64_json), final) for e in events[:2]]
    assert dist[0] > dist[1]
    assert events[-1].usage.input_tokens_details.image_tokens > 0  # type: ignore[union-attr]


# --- determinism ------------------------------------------------------------------------------


def test_same_request_same_bytes(http: httpx.Client) -> None:
    body = {"model": "gpt-image-1", "prompt": PROMPT, "stream": True, "partial_images": 1}
    assert (
        http.post("/images/generations", json=body).content
        == http.post("/images/generations", json=body).content
    )
    img, mask = red_with_left_half_mask()
    # httpx picks a new multipart boundary each time: the reply must not depend on it
    kwargs = form(
        {"prompt": "sepia", "model": "gpt-image-1"}, [("image", png(img)), ("mask", png(mask))]
    )
    first = http.post("/images/edits", **kwargs)
    second = http.post("/images/edits", **kwargs)
    assert first.status_code == 200 and first.content == second.content


# --- bad input --------------------------------------------------------------------------------

_SMALL = png(Image.new("RGB", (32, 32), RED))


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"size": "1000x1000"}, "size", "Supported sizes"),
        ({"size": "huge"}, "size", "Supported sizes"),
        ({"partial_images": 4, "stream": True}, "partial_images", "between 0 and 3"),
        ({"partial_images": -1}, "partial_images", "between 0 and 3"),
        ({"n": 0}, "n", "between 1 and 10"),
        ({"n": 11}, "n", "between 1 and 10"),
        ({"n": "two"}, "n", "integer"),
        ({"prompt": ""}, "prompt", "prompt"),
        ({"quality": "ultra"}, "quality", "Supported values"),
        ({"output_format": "gif"}, "output_format", "Supported values"),
        ({"background": "transparent", "output_format": "jpeg"}, "background", "png or webp"),
        ({"output_compression": 101}, "output_compression", "between 0 and 100"),
        ({"model": "dall-e-3", "n": 2}, "n", "dall-e-3"),
        ({"model": "dall-e-3", "stream": True}, "stream", "GPT image"),
        ({"model": "dall-e-2", "size": "1024x1536"}, "size", "Supported values"),
    ],
)
def test_bad_generation_is_400(
    http: httpx.Client, fields: dict[str, Any], param: str, words: str
) -> None:
    r = http.post("/images/generations", json={"model": "gpt-image-1", "prompt": "x", **fields})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert words in err["message"]


def test_unknown_image_model_is_404(http: httpx.Client) -> None:
    r = http.post("/images/generations", json={"model": "midjourney", "prompt": "x"})
    assert r.status_code == 404 and "gpt-image-1" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("files", "fields", "param", "words"),
    [
        ([("image[]", _SMALL)] * 17, {}, "image", "up to 16"),
        ([("picture", _SMALL)], {}, "image", "Missing required parameter: 'image'"),
        ([("image", b"not an image")], {}, "image", "not a readable image"),
        ([("image", _SMALL), ("mask", png(Image.new("RGBA", (16, 16))))], {}, "mask", "same size"),
        ([("image", _SMALL), ("mask", png(Image.new("RGB", (32, 32))))], {}, "mask", "alpha"),
        ([("image", _SMALL)], {"model": "dall-e-3"}, "model", "dall-e-3"),
        ([("image", _SMALL)], {"partial_images": "9"}, "partial_images", "between 0 and 3"),
    ],
)
def test_bad_edit_is_400(
    http: httpx.Client,
    files: list[tuple[str, bytes]],
    fields: dict[str, str],
    param: str,
    words: str,
) -> None:
    r = http.post("/images/edits", **form({"prompt": "grayscale", **fields}, files))
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err


def test_edit_needs_multipart(http: httpx.Client) -> None:
    r = http.post("/images/edits", json={"prompt": "grayscale"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["error"]["message"]


def test_client_error_names_the_problem(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="partial_images"):
        client.images.generate(model="gpt-image-1", prompt="x", stream=True, partial_images=5)


# --- faults -----------------------------------------------------------------------------------


def test_fault_status_reaches_the_client(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        client.images.generate(
            model="gpt-image-1",
            prompt="x",
            extra_headers={"X-Demo-Fault": "status=429;retry-after=1"},
        )


def test_fault_cut_before_completed(http: httpx.Client) -> None:
    body = {"model": "gpt-image-1", "prompt": PROMPT, "stream": True, "partial_images": 2}
    chunks: list[bytes] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", "/images/generations", json=body, headers={"X-Demo-Fault": "cut=99"}
        ) as r,
    ):
        for chunk in r.iter_bytes():
            chunks.append(chunk)
    text = b"".join(chunks).decode()
    assert text.count("image_generation.partial_image") == 4  # two events (event: + type)
    assert "completed" not in text


def test_fault_eof_ends_cleanly_without_completed(client: openai.OpenAI) -> None:
    events = list(
        client.images.generate(
            model="gpt-image-1",
            prompt=PROMPT,
            stream=True,
            partial_images=2,
            extra_headers={"X-Demo-Fault": "eof=1"},
        )
    )
    assert [e.type for e in events] == ["image_generation.partial_image"]


@pytest.mark.parametrize("spec", ["error=1", "event-error=1"])
def test_fault_error_event_mid_stream(client: openai.OpenAI, http: httpx.Client, spec: str) -> None:
    body = {"model": "gpt-image-1", "prompt": PROMPT, "stream": True, "partial_images": 2}
    text = http.post("/images/generations", json=body, headers={"X-Demo-Fault": spec}).text
    frames = [f for f in text.split("\n\n") if f.strip()]
    assert len(frames) == 2 and "completed" not in text
    last = json.loads(frames[-1].splitlines()[-1].removeprefix("data: "))
    assert last["type"] == "error" and "injected error" in last["error"]["message"]
    assert frames[-1].startswith("event: error") == (spec == "event-error=1")
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="injected error"):
        for e in client.images.generate(
            model="gpt-image-1",
            prompt=PROMPT,
            stream=True,
            partial_images=2,
            extra_headers={"X-Demo-Fault": spec},
        ):
            seen.append(e.type)
    assert seen == ["image_generation.partial_image"]


def test_fault_non_streaming_cut(http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(
            "/images/generations", json={"prompt": "a red dot"}, headers={"X-Demo-Fault": "cut=1"}
        )


def test_models_list_is_unchanged(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == list(DEMO_MODELS)


# --- the CLI hint (user report) ---------------------------------------------------------------


def test_cli_hint_settings_work_for_the_official_client() -> None:
    """The printed settings must work as they are: the openai client needs an API key and a
    model the demo serves (it used to print only OPENAI_BASE_URL, so it failed)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter_chatimg.demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        settings = dict(
            item.split("=", 1) for item in line.split("export ", 1)[1].split() if "=" in item
        )
        assert settings["OPENAI_API_KEY"] and settings["CHATIMG_MODEL"] == "demo-vision"
        code = (
            "import os, openai\n"
            "c = openai.OpenAI()\n"  # from the environment only, as a user would
            "r = c.chat.completions.create(model=os.environ['CHATIMG_MODEL'], "
            "messages=[{'role': 'user', 'content': 'hi'}])\n"
            "i = c.images.generate(model='gpt-image-1', prompt='a red dot')\n"
            "print('OK', bool(r.choices[0].message.content), bool(i.data[0].b64_json))\n"
        )
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATIMG_"))}
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            env={**clean, **settings},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stdout.strip() == "OK True True", done.stderr
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
