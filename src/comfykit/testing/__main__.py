"""``python -m comfykit.testing``: build the cached ComfyUI environment or run a server."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

from comfykit.testing._env import ensure_comfyui_env
from comfykit.testing._server import ComfyUIServer


def cpu_list(text: str) -> frozenset[int]:
    """Parse a CPU list as ``taskset -c`` writes it: ``0``, ``0,2``, ``1-3``."""
    cpus: set[int] = set()
    with contextlib.suppress(ValueError):
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last if dash else first) + 1))
        if cpus and min(cpus) >= 0:
            return frozenset(cpus)
    raise argparse.ArgumentTypeError(f"{text!r} is not a CPU list such as 0 or 0,2 or 1-3")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m comfykit.testing``."""
    parser = argparse.ArgumentParser(prog="python -m comfykit.testing")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("setup", help="build the cached ComfyUI environment (idempotent)")
    serve = sub.add_parser("serve", help="run a local CPU ComfyUI until Ctrl-C")
    serve.add_argument("--port", type=int, default=8188)
    serve.add_argument("--preview-method", default=None)
    serve.add_argument(
        "--cpus",
        type=cpu_list,
        default=None,
        help="pin the server to these CPUs (Linux), e.g. 0 or 0,2 or 1-3",
    )
    args = parser.parse_args(argv)
    if args.cmd == "setup":
        env = ensure_comfyui_env()
        sys.stdout.write(f"{env.root}\n")
        return 0
    # SIGTERM (``kill``) stops the server and removes its files, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(0))
    try:
        server = ComfyUIServer(port=args.port, preview_method=args.preview_method, cpus=args.cpus)
    except ValueError as exc:
        parser.error(str(exc))
    with server:
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
