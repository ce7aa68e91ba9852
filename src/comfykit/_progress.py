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
    on stderr. While the job waits in the queue the bar says how many prompts are ahead of it;
    each sampling pass then gets a bar that stays on screen when it is done. ``live=False`` (a
    client made with ``ws=False`` has no step events) says so on the bar instead of staying
    silent.
    """

    def __init__(
        self,
        *,
        bar: bool = False,
        on_progress: Callable[[Progress], None] | None = None,
        on_preview: Callable[[PreviewImage], None] | None = None,
        description: str = "generating",
        live: bool = True,
    ) -> None:
        self.on_progress = on_progress
        self.on_preview = on_preview
        self._want_bar = bar
        self._bar: Any = None
        self._waiting: Any = None
        self._description = description
        self._live = live
        self.steps_seen = 0

    @staticmethod
    def counter(total: int, description: str, *, enabled: bool) -> ItemCounter:
        """A bar counting finished items (a batch's jobs); does nothing unless ``enabled``."""
        return ItemCounter(total, description, enabled=enabled)

    @property
    def active(self) -> bool:
        """True when anything listens (otherwise events need not be read one by one)."""
        return self._want_bar or self.on_progress is not None or self.on_preview is not None

    @property
    def on_queued(self) -> Callable[[int | None], None] | None:
        """The ``events(on_queued=)`` hook that shows the queue position, when there is a bar."""
        return self.queued if self._want_bar else None

    def queued(self, ahead: int | None) -> None:
        """Show that the job waits in the queue with ``ahead`` prompts before it."""
        if not self._want_bar or self._bar is not None:
            return
        if ahead is None:
            where = "running" if not self._live else "starting"
        else:
            where = "next in the queue" if ahead == 0 else f"queued, {ahead} ahead"
        desc = f"{self._description} ({where}{self._no_live_note})"
        if self._waiting is None:
            # Without step events this line is all there is: it stays.
            self._waiting = _make_bar(None, desc, leave=not self._live)
        else:
            self._waiting.set_description_str(desc)
        self._waiting.refresh()

    @property
    def _no_live_note(self) -> str:
        return "" if self._live else "; no step progress without the WebSocket (ws=False)"

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
        value = int(event.value)
        if self._bar is None or getattr(self._bar, "total", None) != total or value < self._bar.n:
            self.close()  # the queue line, or the previous sampling pass
            # Start at the first value seen: the rate is measured from here, not from zero
            # steps in no time.
            self._bar = _make_bar(total, self._description, initial=value)
        else:
            self._bar.update(value - self._bar.n)
        self._bar.refresh()

    def close(self) -> None:
        """Finish the bars (a finished sampling bar stays on screen)."""
        if self._waiting is not None:
            self._waiting.close()
            self._waiting = None
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
    """The bar without tqdm: one line on stderr, rewritten in place."""

    def __init__(
        self, total: int | None, desc: str, *, initial: int = 0, leave: bool = True
    ) -> None:
        self.total = total
        self.n = initial
        self.desc = desc
        self.leave = leave

    def update(self, n: int) -> None:
        self.n += n

    def set_description_str(self, desc: str) -> None:
        self.desc = desc

    def refresh(self) -> None:
        sys.stderr.write(f"\r{self.desc}: {self.n}/{self.total or '?'}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n" if self.leave else "\r\x1b[2K")
        sys.stderr.flush()


def _make_bar(
    total: int | None, desc: str, unit: str = "step", *, initial: int = 0, leave: bool = True
) -> Any:
    try:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return _LineBar(total, desc, initial=initial, leave=leave)
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, leave=leave)
