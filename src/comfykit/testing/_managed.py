"""What the harness's servers share: ``start()`` / ``stop()`` as a context manager."""

from __future__ import annotations

from types import TracebackType
from typing import TypeVar

__all__ = ["Managed"]

_M = TypeVar("_M", bound="Managed")


class Managed:
    """A server the harness starts and stops; ``with`` starts it and always stops it."""

    def start(self: _M) -> _M:
        """Start the server; return it once it is ready."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and remove what it left."""
        raise NotImplementedError

    def __enter__(self: _M) -> _M:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
