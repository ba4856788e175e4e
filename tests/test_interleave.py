"""Images in the middle of a prompt: ``{name}`` places an image (or a list) at that point.

The exact message a loopback server receives is checked: order, roles, data URIs.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401
from _servers import ReplayServer
from PIL import Image

from jupyter_chatimg._errors import ConfigError
from jupyter_chatimg._messages import content_from_parts
from jupyter_chatimg._request import ImageRef, as_images, interpolate

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def solid(color: str, size: tuple[int, int] = (8, 6)) -> Image.Image:
    return Image.new("RGB", size, color)


def pixels_of(url: str) -> tuple[tuple[int, int], Any]:
    """Size and top-left pixel of the image inside a data URI."""
    assert url.startswith("data:image/")
    raw = base64.b64decode(url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as img:
        rgb = img.convert("RGB")
        return rgb.size, rgb.getpixel((0, 0))


def shape(content: Any) -> list[Any]:
    """A content list as ("text", str) / ("image", size, pixel) tuples."""
    out: list[Any] = []
    for part in content:
        if part["type"] == "text":
            out.append(("text", part["text"]))
        else:
            out.append(("image", *pixels_of(part["image_url"]["url"])))
    return out


class Column:
    """A stand-in for a pandas Series: iterable, with ``tolist()``."""

    def __init__(self, values: list[Any]) -> None:
        self._values = values

    def tolist(self) -> list[Any]:
        return list(self._values)

    def __str__(self) -> str:
        return f"Column of {len(self._values)}"


# -- interpolate (pure) ---------------------------------------------------------------


def test_fields_split_text_and_images_in_order() -> None:
    before, after = solid("red"), solid("blue")
    parts = interpolate("compare {before} with {after}.", {"before": before, "after": after})
    assert parts == [
        "compare ",
        ImageRef(before, "{before}"),
        " with ",
        ImageRef(after, "{after}"),
        ".",
    ]


def test_braces_escape_and_non_fields_stay_literal() -> None:
    ns = {"x": 3, "img": solid("red")}
    parts = interpolate('{{img}} is {x}; JSON {"a": 1}; code {x + 1} and {f()}', ns)
    assert parts == ['{img} is 3; JSON {"a": 1}; code {x + 1} and {f()}']


def test_literal_subscripts_and_attributes_without_eval() -> None:
    imgs = [solid("red"), solid("green"), solid("blue")]
    ns = {"Out": {3: imgs[1]}, "imgs": imgs, "d": {"key": imgs[2]}, "obj": type("O", (), {"n": 7})}
    parts = interpolate("{Out[3]} {imgs[0]} {imgs[-1]} {d[\"key\"]} {d['key']} {obj.n}", ns)
    images = [p.value for p in parts if isinstance(p, ImageRef)]
    assert images == [imgs[1], imgs[0], imgs[2], imgs[2], imgs[2]]
    assert [p.label for p in parts if isinstance(p, ImageRef)][:2] == ["{Out[3]}", "{imgs[0]}"]
    assert parts[-1] == " 7"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{nope}", "names no variable 'nope'"),
        ("{imgs[5]}", "imgs[5] failed (IndexError)"),
        ('{d["x"]}', "d['x'] failed (KeyError)"),
        ("{n[0]}", "n[0] failed (TypeError)"),
        ("{n.real.nothing}", "has no attribute 'nothing'"),
    ],
)
def test_bad_fields_give_one_line(template: str, message: str) -> None:
    ns = {"imgs": [solid("red")], "d": {}, "n": 4}
    with pytest.raises(ConfigError) as info:
        interpolate(template, ns)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_field_never_evaluates_code() -> None:
    calls: list[str] = []

    class Sneaky:
        def __getitem__(self, key: Any) -> Any:
            calls.append(repr(key))
            return "v"

    ns = {"s": Sneaky(), "__import__": __import__}
    parts = interpolate("{s[__import__('os')]} {s[1+1]} {s[2]}", ns)
    assert parts == ["{s[__import__('os')]} {s[1+1]} v"]
    assert calls == ["2"]


def test_list_and_column_fields_place_every_image() -> None:
    imgs = [solid("red"), solid("green")]
    col = Column(imgs)
    text = Column(["a", "b"])
    parts = interpolate("A {imgs} B {col} C {text}", {"imgs": imgs, "col": col, "text": text})
    assert parts[0] == "A "
    assert parts[1] == ImageRef(imgs, "{imgs}")
    assert parts[3].value == imgs  # tolist() of images: all of them, in order
    assert parts[4] == " C Column of 2"  # not images: the text of it
    content = content_from_parts(parts)
    assert [p["type"] for p in content] == [
        "text",
        "image_url",
        "image_url",
        "text",
        "image_url",
        "image_url",
        "text",
    ]


def test_as_images_takes_generators_and_leaves_other_things() -> None:
    imgs = [solid("red"), solid("blue")]
    assert as_images(im for im in imgs) == imgs
    assert as_images("text") == "text"
    assert as_images(imgs[0]) is imgs[0]
    assert as_images({"a": imgs[0]}) == {"a": imgs[0]}
    assert as_images(Column([])).__class__ is Column


# -- over HTTP: what the server receives -------------------------------------------------


def test_interleaved_prompt_reaches_the_server_in_order(
    ipython_shell: Any, replay_server: ReplayServer
) -> None:
    replay_server.add_json("POST", "/v1/chat/completions", COMPLETION)
    shell = ipython_shell
    shell.user_ns.update(before=solid("red", (8, 6)), after=solid("blue", (6, 8)))
    shell.run_cell_magic(
        "chatimg",
        f"--base-url {replay_server.url} --no-stream -s 'Be brief.'",
        "Compare {before} with {after}, then say {{done}}.",
    )
    body = replay_server.requests_to("/v1/chat/completions")[0].json
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == "Be brief."
    assert shape(body["messages"][1]["content"]) == [
        ("text", "Compare "),
        ("image", (8, 6), (255, 0, 0)),
        ("text", " with "),
        ("image", (6, 8), (0, 0, 255)),
        ("text", ", then say {done}."),
    ]


def test_a_list_field_and_extra_images_keep_their_places(
    ipython_shell: Any, replay_server: ReplayServer
) -> None:
    replay_server.add_json("POST", "/v1/chat/completions", COMPLETION)
    shell = ipython_shell
    shell.user_ns.update(
        pair=[solid("red"), solid("lime")], last=solid("blue"), col=Column([solid("white")])
    )
    shell.run_cell_magic(
        "chatimg",
        f"--base-url {replay_server.url} --no-stream --image last",
        "These {pair} and {col}:",
    )
    content = replay_server.requests_to("/v1/chat/completions")[0].json["messages"][-1]["content"]
    assert shape(content) == [
        ("text", "These "),
        ("image", (8, 6), (255, 0, 0)),
        ("image", (8, 6), (0, 255, 0)),
        ("text", " and "),
        ("image", (8, 6), (255, 255, 255)),
        ("text", ":"),
        ("image", (8, 6), (0, 0, 255)),
    ]
    assert json.dumps(content).count("data:image/") == 4
