"""Progress reporting for the high-level calls and the CLI: callbacks and a progress bar."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from comfykit._protocol.events import Event, PreviewImage, Progress

__all__ = ["ItemCounter", "ProgressReporter"]


class ProgressReporter:
    """Feeds job events to ``on_progress`` / ``on_preview`` and (optionally) a progress bar.

    The bar uses ``tqdm.auto`` when tqdm is installed (terminal and notebook), else a plain line
    on stderr.
    """

    def __init__(
        self,
        *,
        bar: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        on_preview: Callable[[PreviewImage], None] | None = None,
        description: str = "generating",
    ) -> None:
        self.on_progress = on_progress
        self.on_preview = on_preview
        self._want_bar = bar
        self._bar: Any = None
        self._description = description
        self.steps_seen = 0

    @staticmethod
    def counter(total: int, description: str, *, enabled: bool) -> ItemCounter:
        """A bar counting finished items (a batch's jobs); does nothing unless ``enabled``."""
        return ItemCounter(total, description, enabled=enabled)

    @property
    def active(self) -> bool:
        """True when anything listens (otherwise events need not be read one by one)."""
        return self._want_bar or self.on_progress is not None or self.on_preview is not None

    def __call__(self, event: Event) -> None:
        if isinstance(event, Progress):
            self.steps_seen += 1
            if self.on_progress is not None:
                self.on_progress(event)
            if self._want_bar:
                self._update_bar(event)
        elif isinstance(event, PreviewImage) and self.on_preview is not None:
            self.on_preview(event)

    def _update_bar(self, event: Progress) -> None:
        total = int(event.max) if event.max else None
        if self._bar is None or getattr(self._bar, "total", None) != total:
            self.close()
            self._bar = _make_bar(total, self._description)
        self._bar.update(int(event.value) - self._bar.n)  # keeps tqdm's rate right
        self._bar.refresh()

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ItemCounter:
    """A progress bar over whole items (``advance()`` once per finished item)."""

    def __init__(self, total: int, description: str, *, enabled: bool) -> None:
        self._bar: Any = _make_bar(total, description, unit="image") if enabled else None

    def advance(self) -> None:
        """One more item finished."""
        if self._bar is not None:
            self._bar.update(1)
            self._bar.refresh()

    def close(self) -> None:
        """Finish the bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _LineBar:
    def __init__(self, total: int | None, desc: str) -> None:
        self.total = total
        self.n = 0
        self.desc = desc

    def update(self, n: int) -> None:
        self.n += n

    def refresh(self) -> None:
        sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total or '?'}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def _make_bar(total: int | None, desc: str, unit: str = "step") -> Any:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return _LineBar(total, desc)
    return tqdm(total=total, desc=desc, unit=unit, leave=False)
