"""``python -m jupyter_chatimg.demo [--port P] [--host 127.0.0.1]``: run the demo server."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from . import DEMO_MODELS
from ._server import DemoServer

DEFAULT_PORT = 8765


def hint(url: str) -> str:
    """What to tell a user: settings that work for the official ``openai`` client (which
    needs some API key) and for jupyter_chatimg (whose default model is a real one)."""
    return (
        f"jupyter_chatimg demo server on {url} (models: {', '.join(DEMO_MODELS)}); point "
        f"clients at it with: export OPENAI_BASE_URL={url} OPENAI_API_KEY=demo "
        "CHATIMG_MODEL=demo-vision\n"
        "Any API key is accepted. Ask for the model demo-vision (describes images) or "
        "demo-image (draws and edits); real chat model names such as gpt-4o-mini are not "
        "served here. The Images API (/v1/images/generations, /v1/images/edits) also answers "
        "gpt-image-1, gpt-image-1.5, gpt-image-2, chatgpt-image-latest, dall-e-2 and dall-e-3. "
        "Ctrl+C stops."
    )


def main(argv: list[str] | None = None) -> int:
    """Run the demo server in the foreground until Ctrl+C (or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_chatimg.demo",
        description="Offline OpenAI-compatible demo server for jupyter_chatimg.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)"
    )
    parser.add_argument(
        "--batch-delay",
        type=float,
        default=0.0,
        metavar="S",
        help="seconds each Batch API request line takes (default 0; up to 600)",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.batch_delay <= 600:
        parser.error("--batch-delay takes seconds from 0 to 600")
    try:
        server = DemoServer(args.port, args.host, start=False, batch_delay=args.batch_delay)
    except OSError as e:
        print(
            f"error: cannot listen on {args.host}:{args.port} ({e.strerror or e}); "
            "pass --port 0 for a free port.",
            file=sys.stderr,
        )
        return 1
    if args.host not in ("127.0.0.1", "localhost"):
        print(f"warning: listening on {args.host}, not only on loopback.", file=sys.stderr)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(hint(server.url), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("demo server stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
