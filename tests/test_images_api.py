"""The Images API everywhere: choosing the dialect, bad input (one line, nothing sent), the
multipart edit as a server receives it, the panel, chat_many, the cache and --chat."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import pytest
from _ipython import ipython_shell  # noqa: F401  (fixture)
from _servers import RecordedRequest, ReplayServer
from PIL import Image

import jupyter_chatimg as ci
from jupyter_chatimg._dialects.images import choose_api, family, form

WIRE = Path(__file__).parent / "fixtures" / "wire_images"
GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
CHAT = "/v1/chat/completions"
KEY = "sk-test-images-api-0123456789abcdef"
OPTIONS = "see %%chatimg? for the options"


def red() -> Image.Image:
    return Image.new("RGB", (64, 48), (220, 30, 30))


def hole_mask(size: tuple[int, int] = (64, 48)) -> Image.Image:
    """Opaque, with a transparent 10x10 square at the top left: edit there."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 10, 10))
    return mask


NAMESPACE: dict[str, Any] = {
    "red": red(),
    "mask": hole_mask(),
    "small_mask": hole_mask((32, 32)),
    "opaque_mask": Image.new("RGBA", (64, 48), (0, 0, 0, 255)),
    "gray_mask": Image.new("L", (64, 48), 0),
    "many": [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(17)],
}

# (cell as typed, the exact line on stderr after "chatimg: ")
BEFORE_SENDING: dict[str, tuple[str, str]] = {
    "an unknown size": (
        "%%chatimg -m gpt-image-1 --size 1000x1000\nhi",
        "size: 1000x1000 is not a size gpt-image-1 makes; use one of 1024x1024, 1536x1024, "
        "1024x1536, auto",
    ),
    "a size that is no size": (
        "%%chatimg -m gpt-image-1 --size big\nhi",
        "size: 'big' is not a size; write WIDTHxHEIGHT, e.g. 1024x1024 (or auto)",
    ),
    "a gpt-image-1 size for dall-e-3": (
        "%%chatimg -m dall-e-3 --size 1536x1024\nhi",
        "size: 1536x1024 is not a size dall-e-3 makes; use one of 1024x1024, 1792x1024, 1024x1792",
    ),
    "a gpt-image-2 size off the 16-pixel grid": (
        "%%chatimg -m gpt-image-2 --size 1000x1000\nhi",
        "size: 1000x1000 is not a size gpt-image-2 makes: width and height must both be "
        "multiples of 16",
    ),
    "partial_images above 3": (
        "%%chatimg -m gpt-image-1 --partial-images 4\nhi",
        "partial_images: 4 is out of range; give 0 to 3",
    ),
    "partial_images below 0": (
        "%%chatimg -m gpt-image-1 --partial-images -1\nhi",
        "partial_images: -1 is out of range; give 0 to 3",
    ),
    "partial images without a stream": (
        "%%chatimg -m gpt-image-1 --partial-images 2 --no-stream\nhi",
        "partial_images: 2 partial images come only in a streamed reply; drop --no-stream "
        "(stream=False), or drop --partial-images",
    ),
    "a mask of another size": (
        "%%chatimg -m gpt-image-1 -i red --mask small_mask\nhi",
        "--mask small_mask: the mask is 32x32 but the first image is 64x48; a mask must be the "
        "size of the image it edits",
    ),
    "a mask with nothing transparent": (
        "%%chatimg -m gpt-image-1 -i red --mask opaque_mask\nhi",
        "--mask opaque_mask: the mask has no transparent pixels, and those mark where to edit; "
        "make it RGBA with the area to change transparent (mask.putalpha(...))",
    ),
    "a mask with no alpha channel": (
        "%%chatimg -m gpt-image-1 -i red --mask gray_mask\nhi",
        "--mask gray_mask: the mask has no transparent pixels, and those mark where to edit; "
        "make it RGBA with the area to change transparent (mask.putalpha(...))",
    ),
    "a mask and no image": (
        "%%chatimg -m gpt-image-1 --mask mask\nhi",
        "--mask mask: a mask needs an image to edit; pass it with --image (images=)",
    ),
    "more than 16 images": (
        "%%chatimg -m gpt-image-1 -i many\nhi",
        "more than 16 images: the Images API edits at most 16 at once; send fewer",
    ),
    "--n 11 for an image model": (
        "%%chatimg -m gpt-image-1 --n 11\nhi",
        "n: 11 is out of range for gpt-image-1; the Images API makes 1 to 10 images per request",
    ),
    "--n 2 for dall-e-3": (
        "%%chatimg -m dall-e-3 --n 2\nhi",
        "n: dall-e-3 makes one image per request; drop --n 2",
    ),
    "an unknown quality": (
        "%%chatimg -m gpt-image-1 --quality ultra\nhi",
        "quality: 'ultra' is not valid for gpt-image-1; use one of low, medium, high, auto",
    ),
    "a GPT quality for dall-e-3": (
        "%%chatimg -m dall-e-3 --quality low\nhi",
        "quality: 'low' is not valid for dall-e-3; use one of standard, hd, auto",
    ),
    "an unknown background": (
        "%%chatimg -m gpt-image-1 --background purple\nhi",
        "argument --background: invalid choice: 'purple' (choose from 'transparent', "
        f"'opaque', 'auto'); {OPTIONS}",
    ),
    "an unknown output format": (
        "%%chatimg -m gpt-image-1 --output-format gif\nhi",
        "argument --output-format: invalid choice: 'gif' (choose from 'png', 'jpeg', "
        f"'webp'); {OPTIONS}",
    ),
    "a transparent JPEG": (
        "%%chatimg -m gpt-image-1 --background transparent --output-format jpeg\nhi",
        "background: transparent needs png or webp output; drop --output-format jpeg",
    ),
    "a GPT-only field for dall-e-3": (
        "%%chatimg -m dall-e-3 --background transparent\nhi",
        "background: dall-e-3 does not take it (only GPT image models); drop it",
    ),
    "response_format (--json) for a GPT image model": (
        "%%chatimg -m gpt-image-1 --json\nhi",
        "response_format: gpt-image-1 does not take it (only dall-e models; GPT image models "
        "always return b64_json); drop it",
    ),
    "a chat field for an image model": (
        "%%chatimg -m gpt-image-1 --temperature 0.5\nhi",
        "'temperature' is not a field of the Images API (which gpt-image-1 speaks); drop it, or "
        "pass extra={'temperature': ...} (--extra JSON) if your endpoint takes it",
    ),
    "an Images API field for a chat model": (
        "%%chatimg -m gpt-4o --size 1024x1024\nhi",
        "size: an Images API field, but gpt-4o speaks chat completions; use an image model "
        "(gpt-image-1 ...), --api images (api='images'), or list the model in %config "
        "ChatImg.image_models",
    ),
    "dall-e-3 asked to edit": (
        "%%chatimg -m dall-e-3 -i red\nedit it",
        "dall-e-3 cannot edit images; use a GPT image model (gpt-image-1) or dall-e-2",
    ),
    "two images for dall-e-2": (
        "%%chatimg -m dall-e-2 -i red -i red\nhi",
        "2 images: dall-e-2 edits one image at a time",
    ),
    "an image URL to edit": (
        "%%chatimg -m gpt-image-1 -i '\"https://example.com/a.png\"'\nhi",
        '--image "https://example.com/a.png": an http(s) URL cannot be uploaded to the Images '
        "API; download it and pass the bytes or a path",
    ),
    "an image and no prompt": (
        "%chatimg -m gpt-image-1 -i red",
        "empty prompt: gpt-image-1 (the Images API) needs one; say what to draw, or how to "
        "change the image",
    ),
    "an unknown --api": (
        "%%chatimg -m gpt-image-1 --api banana\nhi",
        "argument --api: invalid choice: 'banana' (choose from 'auto', 'chat', "
        f"'images'); {OPTIONS}",
    ),
}


@pytest.fixture
def server(clean_env: pytest.MonkeyPatch) -> Iterator[ReplayServer]:
    with ReplayServer() as srv:
        clean_env.setenv("CHATIMG_BASE_URL", srv.url)
        clean_env.setenv("CHATIMG_API_KEY", KEY)
        yield srv


@pytest.fixture
def shell(ipython_shell: Any, server: ReplayServer) -> Iterator[Any]:
    ipython_shell.user_ns.update(NAMESPACE)
    yield ipython_shell
    ipython_shell.run_line_magic("config", "ChatImg.image_models = None")
    for name in NAMESPACE:
        ipython_shell.user_ns.pop(name, None)


def run(shell: Any, capsys: pytest.CaptureFixture[str], cell: str) -> tuple[str, str]:
    capsys.readouterr()
    shell.user_ns.pop("_", None)
    if cell.startswith("%%"):
        line, _, body = cell[2:].partition("\n")
        shell.run_cell_magic("chatimg", line.removeprefix("chatimg").strip(), body)
    else:
        shell.run_line_magic("chatimg", cell.removeprefix("%chatimg").strip())
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.mark.parametrize("name", list(BEFORE_SENDING))
def test_refused_before_sending(
    name: str, shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cell, message = BEFORE_SENDING[name]
    out, err = run(shell, capsys, cell)
    assert err == "⚠ " + message + "\n"
    assert out == ""
    assert server.requests == []  # nothing was sent


@pytest.mark.parametrize(
    ("kwargs", "error", "start"),
    [
        ({"size": "640x480"}, ci.ConfigError, "size: 640x480 is not a size gpt-image-1 makes"),
        ({"partial_images": 7}, ci.ConfigError, "partial_images: 7 is out of range"),
        ({"n": 11}, ci.ConfigError, "n: 11 is out of range for gpt-image-1"),
        ({"mask": hole_mask((10, 10))}, ci.ImageInputError, "mask: the mask is 10x10"),
        ({"images": NAMESPACE["many"]}, ci.ConfigError, "more than 16 images"),
        ({"output_format": "tiff"}, ci.ConfigError, "output_format: 'tiff' is not one of"),
        ({"background": "none"}, ci.ConfigError, "background: 'none' is not one of"),
    ],
)
def test_chat_refuses_before_sending(
    kwargs: dict[str, Any], error: type[Exception], start: str, server: ReplayServer
) -> None:
    images = kwargs.pop("images", [red()])
    with pytest.raises(error) as info:
        ci.chat("make it blue", images, model="gpt-image-1", display=False, **kwargs)
    assert str(info.value).startswith(start)
    assert "\n" not in str(info.value)
    assert server.requests == []


def test_choosing_the_dialect() -> None:
    assert choose_api(None, "gpt-image-1") == "images"
    assert choose_api("auto", "dall-e-3") == "images"
    assert choose_api("auto", "chatgpt-image-latest") == "images"
    assert choose_api("auto", "GPT-Image-1.5") == "images"
    assert choose_api("auto", "gpt-4o") == "chat"
    assert choose_api("auto", "gpt-4o-image") == "chat"  # a gateway's chat image model
    assert choose_api("auto", "flux-schnell", ["FLUX-schnell"]) == "images"
    assert choose_api("chat", "gpt-image-1") == "chat"
    assert choose_api("images", "my-model") == "images"
    assert [family(m) for m in ("gpt-image-1-mini", "gpt-image-2", "dall-e-2", "flux")] == [
        "gpt-image",
        "gpt-image-2",
        "dall-e-2",
        "other",
    ]
    with pytest.raises(ci.ConfigError, match="api: 'both' is not one of auto, chat, images"):
        ci.chat("x", api="both", display=False)


def add_reply(srv: ReplayServer, path: str = GENERATIONS, name: str = "gpt_image_b64.json") -> None:
    srv.add_file(WIRE / name, path=path)


def test_magic_picks_the_dialect_by_model_setting_and_option(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    add_reply(server)
    run(shell, capsys, "%%chatimg -m gpt-image-1 -o r\na lighthouse")
    assert shell.user_ns["r"].ok and len(shell.user_ns["r"].images) == 1
    # A gateway's image model: named in %config ChatImg.image_models ...
    shell.run_line_magic("config", "ChatImg.image_models = ['flux-schnell']")
    run(shell, capsys, "%%chatimg -m flux-schnell --size 768x512 -o r\na lighthouse")
    # ... or forced for one cell with --api images.
    run(shell, capsys, "%%chatimg -m some-model --api images -o r\na lighthouse")
    bodies = [r.json for r in server.requests]
    assert [r.path for r in server.requests] == [GENERATIONS] * 3
    assert bodies[1] == {"model": "flux-schnell", "prompt": "a lighthouse", "size": "768x512"}
    assert bodies[2] == {"model": "some-model", "prompt": "a lighthouse"}
    # --api chat sends an image model's id to chat completions after all.
    server.add_sse(
        "POST",
        CHAT,
        'data: {"choices":[{"index":0,"delta":{"content":"ok"},'
        '"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
    )
    out, err = run(shell, capsys, "%%chatimg -m gpt-image-1 --api chat\nhi")
    assert server.requests[-1].path == CHAT and out.strip() == "ok" and err == ""


def multipart(request: RecordedRequest) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, file name, content type, bytes) of each part, in order."""
    head = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n"
    message = BytesParser(policy=email_policy).parsebytes(head + request.body)
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append((str(name), part.get_filename(), part.get_content_type(), payload))
    return parts


def test_the_edit_reaching_the_server_carries_each_image_and_the_mask(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    add_reply(server, EDITS)
    _, err = run(
        shell,
        capsys,
        "%%chatimg -m gpt-image-1 -i red --mask mask --size 1024x1024 -o r\npaint the corner blue",
    )
    assert err == "" and shell.user_ns["r"].ok
    (request,) = server.requests
    assert request.path == EDITS
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    parts = multipart(request)
    fields = {name: data.decode() for name, filename, _, data in parts if filename is None}
    assert fields == {
        "model": "gpt-image-1",
        "prompt": "paint the corner blue",
        "size": "1024x1024",
        "stream": "true",
    }
    files = {name: (filename, ctype, data) for name, filename, ctype, data in parts if filename}
    assert set(files) == {"image", "mask"}
    image = Image.open(io.BytesIO(files["image"][2]))
    assert image.size == (64, 48) and image.convert("RGB").getpixel((5, 5)) == (220, 30, 30)
    assert files["mask"][:2] == ("mask.png", "image/png")
    sent_mask = Image.open(io.BytesIO(files["mask"][2]))
    assert sent_mask.format == "PNG" and sent_mask.size == (64, 48) and sent_mask.mode == "RGBA"
    assert sent_mask.getpixel((5, 5))[3] == 0 and sent_mask.getpixel((30, 30))[3] == 255


def test_several_images_go_as_image_brackets(server: ReplayServer) -> None:
    add_reply(server, EDITS)
    sizes = [(40, 30), (20, 20), (16, 48)]
    images = [Image.new("RGB", s, (0, 40 * i, 200)) for i, s in enumerate(sizes)]
    result = ci.chat("put them on one table", images, model="gpt-image-1.5", display=False)
    assert result.ok
    parts = multipart(server.requests[0])
    files = [(name, filename, data) for name, filename, _, data in parts if filename]
    assert [(name, filename) for name, filename, _ in files] == [
        ("image[]", "image-1.png"),
        ("image[]", "image-2.png"),
        ("image[]", "image-3.png"),
    ]
    assert [Image.open(io.BytesIO(data)).size for _, _, data in files] == sizes


def test_form_of_an_edit_is_what_the_official_client_sends() -> None:
    """One file as ``image``; text fields as text (booleans lower case)."""
    png = "data:image/png;base64,iVBORw0KGgo="
    fields, files = form({"model": "m", "prompt": "p", "image": [png], "stream": True, "n": 2})
    assert fields == {"model": "m", "prompt": "p", "stream": "true", "n": "2"}
    assert files == [("image", ("image.png", b"\x89PNG\r\n\x1a\n", "image/png"))]


def test_a_cut_stream_keeps_the_last_partial_and_shows_one_line(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.add_file(WIRE / "gen_stream_cut.sse", path=GENERATIONS)
    out, err = run(shell, capsys, "%%chatimg -m gpt-image-1 --partial-images 1 -o r\nhi")
    result = shell.user_ns["r"]
    assert isinstance(result.error, ci.StreamError)
    assert [im.size for im in result.images] == [(48, 32)]
    # In a terminal: one line for the error, one for the image kept.
    assert out.splitlines() == [
        "[image 48x32]",
        "⚠ the connection closed before the reply finished (no completed event); the partial "
        "reply is kept - run the cell again for a whole one",
    ]
    assert server.requests[0].json["partial_images"] == 1 and err == ""


def test_stats_footer_counts_the_images_tokens(server: ReplayServer) -> None:
    add_reply(server)
    sink = _Sink()
    ci.chat("hi", model="gpt-image-1", sink=sink, show_stats=True)
    assert "gpt-image-1 · 272 tokens" in sink.updates[-1]


class _Sink:
    wants_deltas = False

    def __init__(self) -> None:
        self.updates: list[str] = []
        self.shows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []

    def show(
        self, slot: int, data: dict[str, Any], metadata: dict[str, Any], *, final: bool
    ) -> None:
        self.shows.append((slot, data, metadata))
        if "text/html" in data:
            self.updates.append(data["text/html"])

    def delta(self, text: str) -> None:  # pragma: no cover
        pass


def test_chat_many_and_the_cache(server: ReplayServer, tmp_path: Path) -> None:
    add_reply(server)
    prompts = ["a red star", "a blue moon", "a green tree"]
    results = ci.chat_many(
        prompts,
        model="gpt-image-1",
        quality="low",
        display=False,
        cache=True,
        cache_dir=str(tmp_path),
    )
    assert [len(r.images) for r in results] == [1, 1, 1]
    assert sorted(r.json["prompt"] for r in server.requests) == sorted(prompts)
    assert {r.json["quality"] for r in server.requests} == {"low"}
    again = ci.chat(
        "a blue moon",
        model="gpt-image-1",
        quality="low",
        display=False,
        cache=True,
        cache_dir=str(tmp_path),
    )
    assert again.cached and len(server.requests) == 3
    assert again.images[0].tobytes() == results[1].images[0].tobytes()
    assert again.usage == results[1].usage


def test_chat_continues_with_an_edit_of_the_returned_image(
    shell: Any, server: ReplayServer, capsys: pytest.CaptureFixture[str]
) -> None:
    add_reply(server)
    add_reply(server, EDITS)
    shell.run_line_magic("chatimg_reset", "")
    run(shell, capsys, "%%chatimg -m gpt-image-1 --chat -o first\na red star")
    out, _ = run(shell, capsys, "%%chatimg -m gpt-image-1 --chat -o second\nnow make it blue")
    assert [r.path for r in server.requests] == [GENERATIONS, EDITS]
    files = [p for p in multipart(server.requests[1]) if p[1]]
    assert len(files) == 1
    sent = Image.open(io.BytesIO(files[0][3]))
    assert sent.size == shell.user_ns["first"].images[0].size
    assert "editing the image the last reply returned" in out
    shell.run_line_magic("chatimg_reset", "")


def test_the_panel_speaks_the_images_api_for_an_image_model(
    server: ReplayServer, clean_env: pytest.MonkeyPatch
) -> None:
    from jupyter_chatimg.panel._widget import ChatPanel

    add_reply(server, name="gen_stream.sse")
    panel = ChatPanel(update_interval=0.001)
    try:
        panel.model.value = "gpt-image-1"
        panel.prompt.value = "a small red lighthouse"
        panel.send()
        assert panel.wait(30)
        assert panel.result is not None and panel.result.ok, panel.status.value
        assert [im.size for im in panel.images] == [(32, 32)]
        (request,) = server.requests_to(GENERATIONS)  # (the panel also asked for /models)
        assert request.json == {
            "model": "gpt-image-1",
            "prompt": "a small red lighthouse",
            "stream": True,
        }
        # The reply's entry shows the final image (it replaced the partial ones in place).
        outputs = panel.entries[-1].outputs
        images = [o for o in outputs if "image/png" in o["data"]]
        assert len(images) == 1
        assert "partial" not in images[0]["metadata"].get("jupyter_chatimg", {})
    finally:
        panel.close()


def test_demo_is_not_started_by_choosing(clean_env: pytest.MonkeyPatch) -> None:
    """api_for needs only the model and the setting (no server, no key)."""
    from jupyter_chatimg._config import Settings
    from jupyter_chatimg._request import build_request
    from jupyter_chatimg._session import Session

    request = build_request("x", api="auto")
    assert Session.api_for(request, Settings(model="dall-e-2")) == "images"
    assert Session.api_for(request, Settings(model="llava")) == "chat"
    assert os.environ.get("CHATIMG_BASE_URL") is None


def test_against_the_demo_generate_stream_edit_with_mask_and_dalle(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """The whole path against the offline demo's Images API: pixels show what was asked."""
    sink = _InPlace()
    poster = ci.chat(
        "three blue circles on a yellow background",
        model="gpt-image-1",
        base_url="demo",
        size="1536x1024",
        partial_images=2,
        sink=sink,
    )
    assert poster.ok and poster.images[0].size == (1536, 1024)
    r, g, b = poster.images[0].convert("RGB").getpixel((5, 5))
    assert r > 200 and g > 180 and b < 80  # yellow
    assert poster.usage and poster.usage["total_tokens"] > 0
    assert sink.in_place and "partial" not in sink.in_place[-1][1].get("jupyter_chatimg", {})
    assert "offline demo model (gpt-image-1)" in sink.updates[-1].replace("\\", "")
    # An edit with a mask: only the transparent (left) half turns gray.
    picture = Image.new("RGB", (64, 48), (220, 30, 30))
    mask = Image.new("RGBA", (64, 48), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 48))
    half = ci.chat(
        "make it grayscale",
        [picture],
        model="gpt-image-1",
        base_url="demo",
        mask=mask,
        display=False,
    )
    out = half.images[0].convert("RGB")
    left, right = out.getpixel((5, 20)), out.getpixel((60, 20))
    assert left[0] == left[1] == left[2] and right == (220, 30, 30)
    # dall-e-3: a url image fetched from the demo, and the revised prompt as text.
    heart = ci.chat("a red heart", model="dall-e-3", base_url="demo", display=False)
    assert heart.text.startswith("A 1024×1024 image") and heart.images[0].size == (1024, 1024)


class _InPlace(_Sink):
    @property
    def in_place(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Every image output shown, in order (the partials' and the final image's)."""
        return [(d, md) for _, d, md in self.shows if any(k.startswith("image/") for k in d)]


def test_an_edit_is_sent_whole_again_on_retry(server: ReplayServer) -> None:
    error = {"error": {"message": "busy", "type": "server_error", "param": None, "code": None}}
    server.add(
        "POST",
        EDITS,
        503,
        {"Content-Type": "application/json", "retry-after-ms": "10"},
        json.dumps(error),
    )
    add_reply(server, EDITS)
    result = ci.chat(
        "make it blue", [red()], model="gpt-image-1", mask=hole_mask(), display=False, max_retries=2
    )
    assert result.ok and len(server.requests) == 2
    first, second = (multipart(r) for r in server.requests)
    assert first == second and [p[0] for p in first if p[1]] == ["image", "mask"]


def test_batch_mode_says_image_models_run_live(server: ReplayServer, tmp_path: Path) -> None:
    with pytest.raises(ci.ConfigError) as info:
        ci.chat_many(
            ["a"], model="gpt-image-1", mode="batch", journal=tmp_path / "j.jsonl", display=False
        )
    assert str(info.value) == (
        'mode="batch" sends chat completions; gpt-image-1 speaks the Images API, so run it with '
        'mode="live" (the default)'
    )
    assert server.requests == [] and not (tmp_path / "j.jsonl").exists()
