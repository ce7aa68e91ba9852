"""``python -m comfykit``: the command line (the same as the ``comfykit`` command)."""

from __future__ import annotations

import sys

from comfykit.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
