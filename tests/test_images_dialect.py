"""The Images API dialect alone (pure): bodies, the stream rules, replies and errors; and
the in-place partial image view with a fake clock."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg._dialects.images import (
    EDIT,
    GENERATION,
    ImagesStreamParser,
    build_edit,
    build_generation,
    parse_images_response,
    wants_stream,
)
from jupyter_chatimg._render_images import PREVIEW_BYTES, PartialImages, partial_bundle


def b64(img: Image.Image, fmt: str = "PNG", **kw: Any) -> str:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return base64.b64encode(buf.getvalue()).decode()


SQUARE = Image.new("RGB", (8, 8), (10, 200, 10))


def test_generation_body_keeps_checked_fields_and_merges_extra() -> None:
    params = {
        "size": "1536X1024",
        "quality": "High",
        "background": "opaque",
        "output_format": "jpeg",
        "output_compression": 80,
        "moderation": "low",
        "n": 2,
        "user": "u1",
        "partial_images": 2,
        "seed": None,
    }
    body = build_generation(
        "gpt-image-1", " a fox \n", stream=True, params=params, extra={"x_gateway": 1}
    )
    assert body == {
        "model": "gpt-image-1",
        "prompt": "a fox",
        "size": "1536x1024",
        "quality": "high",
        "background": "opaque",
        "output_format": "jpeg",
        "output_compression": 80,
        "moderation": "low",
        "n": 2,
        "user": "u1",
        "partial_images": 2,
        "stream": True,
        "x_gateway": 1,
    }
    assert build_generation("dall-e-3", "a fox", stream=False, params={"style": "natural"}) == {
        "model": "dall-e-3",
        "prompt": "a fox",
        "style": "natural",
    }
    # gpt-image-2 takes any size on its 16-pixel grid; a gateway's model any WxH.
    assert (
        build_generation("gpt-image-2", "x", stream=False, params={"size": (1536, 864)})["size"]
        == "1536x864"
    )
    assert (
        build_generation("flux-dev", "x", stream=False, params={"size": "1000x750"})["size"]
        == "1000x750"
    )


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("gpt-image-1", {"size": "1024"}, "size: '1024' is not a size"),
        ("gpt-image-2", {"size": "3840x3840"}, "the largest size is 3840x2160"),
        ("dall-e-2", {"size": "auto"}, "size: auto is not a size dall-e-2 makes"),
        ("gpt-image-1", {"n": 0}, "n: 0 is out of range for gpt-image-1"),
        ("gpt-image-1", {"n": True}, "n: True is out of range"),
        ("gpt-image-1", {"partial_images": 2.5}, "partial_images: 2.5 is out of range"),
        ("gpt-image-1", {"output_format": "jpg"}, "(jpg is written jpeg)"),
        ("gpt-image-1", {"style": "vivid"}, "style: gpt-image-1 does not take it"),
        ("dall-e-3", {"moderation": "low"}, "moderation: dall-e-3 does not take it"),
        ("gpt-image-1", {"input_fidelity": "high"}, "input_fidelity: only an edit takes it"),
        ("gpt-image-1", {"output_compression": 101}, "output_compression: 101 is not valid"),
        ("gpt-image-1", {"top_p": 0.5}, "'top_p' is not a field of the Images API"),
        ("dall-e-2", {"quality": "hd"}, "quality: 'hd' is not valid for dall-e-2"),
    ],
)
def test_bad_fields_are_one_line(model: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ci.ConfigError) as info:
        build_generation(model, "x", stream=True, params=params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_edits_refuse_what_an_edit_cannot_take() -> None:
    png = "data:image/png;base64," + b64(SQUARE)
    with pytest.raises(ci.ConfigError, match="moderation: an edit does not take it"):
        build_edit("gpt-image-1", "x", [png], stream=False, params={"moderation": "low"})
    with pytest.raises(ci.ConfigError, match="17 images: the Images API edits at most 16 at once"):
        build_edit("gpt-image-1", "x", [png] * 17, stream=False)
    with pytest.raises(ci.ConfigError, match="an http"):
        build_edit("gpt-image-1", "x", ["https://example.com/a.png"], stream=False)
    with pytest.raises(ci.ConfigError, match="empty prompt"):
        build_edit("gpt-image-1", "  ", [png], stream=False)
    with pytest.raises(ci.ConfigError, match="above the 1000 that dall-e-2 takes"):
        build_edit("dall-e-2", "x" * 1001, [png], stream=False)
    body = build_edit(
        "gpt-image-1", "x", [png], png, stream=False, params={"input_fidelity": "high"}
    )
    assert body["mask"] == png and body["input_fidelity"] == "high"
    fields, files = EDIT.form(body)  # type: ignore[misc]
    assert [name for name, _ in files] == ["image", "mask"]
    assert fields == {"model": "gpt-image-1", "prompt": "x", "input_fidelity": "high"}
    assert GENERATION.form({"model": "m"}) is None and GENERATION.path == "/images/generations"


def test_when_to_stream() -> None:
    assert wants_stream("gpt-image-1", True, {}) is True
    assert wants_stream("gpt-image-1", False, {}) is False
    assert wants_stream("dall-e-3", True, {}) is False  # dall-e never streams
    assert wants_stream("flux-dev", True, {}) is False  # a gateway's model: only when asked
    assert wants_stream("flux-dev", True, {"partial_images": 2}) is True
    with pytest.raises(ci.ConfigError, match="come only in a streamed reply"):
        wants_stream("gpt-image-1", False, {"partial_images": 1})


def test_whole_replies() -> None:
    jpeg, webp = b64(SQUARE, "JPEG"), b64(SQUARE, "WEBP")
    result = parse_images_response(
        {
            "created": 1,
            "data": [
                {"b64_json": jpeg, "revised_prompt": "A green square."},
                {"b64_json": webp, "revised_prompt": "A green square."},
                {"url": "https://cdn.example.com/x.png", "revised_prompt": "Another one."},
                "junk",
            ],
            "usage": {"total_tokens": 5, "cost": 0.01},
        }
    )
    urls = result.choices[0].image_urls
    assert [u.split(";")[0] for u in urls[:2]] == ["data:image/jpeg", "data:image/webp"]
    assert urls[2] == "https://cdn.example.com/x.png"
    assert result.text == "A green square.\n\nAnother one."  # each revised prompt once
    assert result.usage == {"total_tokens": 5, "cost": 0.01}
    with pytest.raises(ci.APIError, match="blocked"):
        parse_images_response({"error": {"message": "blocked"}})
    with pytest.raises(ci.APIError, match="no data list"):
        parse_images_response({"object": "chat.completion", "choices": []})
    with pytest.raises(ci.APIError, match="not a JSON object"):
        parse_images_response([1, 2])


def feed(parser: ImagesStreamParser, events: list[tuple[str, Any]]) -> list[Any]:
    out = []
    for event, data in events:
        out.extend(parser.feed(data if isinstance(data, str) else json.dumps(data), event))
    return out


def partial(i: int, colour: tuple[int, int, int] = (1, 2, 3)) -> dict[str, Any]:
    img = Image.new("RGB", (8, 8), colour)
    return {"type": "image_edit.partial_image", "b64_json": b64(img), "partial_image_index": i}


@pytest.mark.parametrize(
    "error_event",
    [
        ("message", {"type": "error", "error": {"message": "the model failed"}}),
        ("message", {"error": {"message": "the model failed"}}),
        ("error", {"message": "the model failed"}),
    ],
)
def test_an_error_mid_stream_keeps_the_last_partial(error_event: tuple[str, Any]) -> None:
    parser = ImagesStreamParser()
    feed(parser, [("message", partial(0)), ("message", partial(1, (9, 9, 9)))])
    with pytest.raises(ci.StreamError) as info:
        feed(parser, [error_event])
    assert "the server reported an error mid-reply: the model failed" in str(info.value)
    partial_result = info.value.partial
    assert partial_result is not None
    (url,) = partial_result.choices[0].image_urls
    data = base64.b64decode(url.split(",", 1)[1])
    assert Image.open(io.BytesIO(data)).getpixel((0, 0)) == (9, 9, 9)


def test_event_names_the_type_the_json_leaves_out_and_done_without_completed_is_cut() -> None:
    parser = ImagesStreamParser()
    p = partial(0)
    del p["type"]
    deltas = feed(
        parser,
        [
            ("image_generation.partial_image", p),
            ("message", ": keep-alive"),
            ("message", {"type": "image_generation.something_new"}),
            ("message", "[DONE]"),
        ],
    )
    assert [d.partial_image is not None for d in deltas] == [True]
    assert parser.done and parser.saw_done and not parser.finished
    assert parser.skipped == 2
    assert parser.result().finish_reason is None


def test_a_gateway_completed_event_with_a_data_list() -> None:
    parser = ImagesStreamParser()
    feed(
        parser,
        [
            (
                "message",
                {
                    "type": "image_generation.completed",
                    "data": [{"b64_json": b64(SQUARE), "revised_prompt": "Green."}],
                },
            )
        ],
    )
    result = parser.result()
    assert parser.finished and result.text == "Green." and len(result.choices[0].image_urls) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Slot:
    """A sink with one in-place image slot."""

    def __init__(self) -> None:
        self.puts: list[tuple[dict[str, str], dict[str, Any]]] = []

    def image_in_place(self, data: dict[str, str], metadata: dict[str, Any]) -> None:
        self.puts.append((data, metadata))


def uri(img: Image.Image, fmt: str = "PNG") -> str:
    return f"data:image/{fmt.lower()};base64,{b64(img, fmt)}"


def test_partials_are_coalesced_and_the_final_replaces_the_last() -> None:
    clock, slot = Clock(), Slot()
    view = PartialImages(slot, update_interval=10.0, clock=clock)  # no timer fires in the test
    view.show(uri(SQUARE))
    view.show(uri(Image.new("RGB", (8, 8), "red")))  # within the interval: held back
    view.show(uri(Image.new("RGB", (8, 8), "blue")))  # replaces the one held back
    assert len(slot.puts) == 1 and view.received == 3
    assert view.finish(Image.new("RGB", (8, 8), "white"), {"model": "m"}) is True
    assert len(slot.puts) == 2 and slot.puts[-1][0]["text/plain"] == "<image 8x8>"
    assert slot.puts[-1][1]["jupyter_chatimg"] == {"model": "m"}
    assert view.finish(SQUARE, None) is False  # a second final image gets its own output
    view.show(uri(SQUARE))  # nothing after the end
    assert len(slot.puts) == 2


def test_first_partial_goes_as_it_came_large_later_ones_as_previews() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    big = Image.fromarray(noise, "RGB")
    data, md = partial_bundle(uri(big), 1, preview=False)
    assert data["image/png"] == b64(big)  # not decoded, not re-encoded
    assert md["image/png"] == {"width": 400, "height": 300}
    data, md = partial_bundle(uri(big), 2, preview=True)
    assert len(b64(big)) * 3 // 4 > PREVIEW_BYTES
    sent = Image.open(io.BytesIO(base64.b64decode(data["image/jpeg"])))
    assert sent.size == (200, 150) and md["image/jpeg"] == {"width": 400, "height": 300}
    # A WEBP partial is shown as PNG or JPEG (front ends may not render image/webp).
    data, _ = partial_bundle(uri(SQUARE, "WEBP"), 1, preview=False)
    assert set(data) == {"image/jpeg", "text/plain"}
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    data, _ = partial_bundle(uri(transparent, "WEBP"), 1, preview=False)
    assert set(data) == {"image/png", "text/plain"}


def test_a_sink_without_an_image_slot_shows_no_partials() -> None:
    view = PartialImages(object(), update_interval=0.01)
    view.show(uri(SQUARE))
    assert view.finish(SQUARE, None) is False and view.shown == 0
