"""``python -m comfykit.testing``: build the cached ComfyUI environment or run a server."""

from __future__ import annotations

import argparse
import signal
import sys
import time

from comfykit.testing._env import ensure_comfyui_env
from comfykit.testing._server import ComfyUIServer


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m comfykit.testing``."""
    parser = argparse.ArgumentParser(prog="python -m comfykit.testing")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", help="build the cached ComfyUI environment (idempotent)")
    serve = sub.add_parser("serve", help="run a local CPU ComfyUI until Ctrl-C")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--preview-method", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "setup":
        env = ensure_comfyui_env()
        sys.stdout.write(f"{env.root}\n")
        return 0
    # SIGTERM (``kill``) stops the server and removes its files, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))
    with ComfyUIServer(port=args.port, preview_method=args.preview_method) as server:
        sys.stdout.write(
            f"ComfyUI is running at {server.url}, files in {server.base_dir} (Ctrl-C stops it)\n"
        )
        sys.stdout.flush()
        try:
            while server.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
