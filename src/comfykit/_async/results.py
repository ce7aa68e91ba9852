"""What a finished job produced: files per node, with download helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pydantic import PrivateAttr

from comfykit._types import FileRef, HistoryEntry

if TYPE_CHECKING:
    from PIL.Image import Image

    from comfykit._async._core import AsyncClientCore

__all__ = ["AsyncOutputFile", "AsyncResult"]


class AsyncOutputFile(FileRef):
    """A file a node produced (``filename``, ``subfolder``, ``type``), bound to its client.

    Attributes:
        node_id: the node that produced it.
        key: the output key it came from (``images``, ``gifs``, ``audio``, ...).
    """

    node_id: str = ""
    key: str = "images"
    _client: AsyncClientCore | None = PrivateAttr(default=None)

    def bind(self, client: AsyncClientCore) -> AsyncOutputFile:
        """Attach the client used by :meth:`read` and :meth:`save`."""
        self._client = client
        return self

    def _require_client(self) -> AsyncClientCore:
        if self._client is None:
            from comfykit._exceptions import InputError

            raise InputError("this OutputFile is not bound to a client")
        return self._client

    @property
    def url(self) -> str:
        """The ``/view`` URL of the file."""
        return self._require_client().view_url(self)

    async def read(self) -> bytes:
        """Download the file's bytes."""
        data = await self._require_client().download(self)
        assert isinstance(data, bytes)
        return data

    async def save(self, dest: str | Path | IO[bytes], *, overwrite: bool = False) -> Path | None:
        """Stream the file to ``dest``: a folder (a trailing separator or an existing folder;
        created), a file path, or a binary file object.

        An existing file is never overwritten unless ``overwrite=True``: the next free
        ``name-1.ext`` is taken instead (or the existing file, when it holds the same bytes).
        Returns the path written. Raises ``FileSaveError`` naming ``dest`` when it cannot be
        written.
        """
        written = await self._require_client().download(self, dest, overwrite=overwrite)
        return written if isinstance(written, Path) else None

    async def to_pil(self) -> Image:
        """Download and decode the file as a PIL image (imports PIL)."""
        import io

        from PIL import Image as PILImage

        img = PILImage.open(io.BytesIO(await self.read()))
        img.load()
        return img


class AsyncResult:
    """Outputs of a finished job, per node id, plus what the server recorded about the run."""

    def __init__(
        self,
        client: AsyncClientCore,
        *,
        prompt_id: str,
        outputs: dict[str, dict[str, Any]],
        history: HistoryEntry | None,
        cached_nodes: list[str],
    ) -> None:
        self.prompt_id = prompt_id
        self.outputs = outputs
        self.history = history
        self.cached_nodes = cached_nodes
        self.files: list[AsyncOutputFile] = [
            AsyncOutputFile.model_validate({**ref, "node_id": node, "key": key}).bind(client)
            for node, key, ref in _iter_file_refs(outputs)
        ]

    @property
    def images(self) -> list[AsyncOutputFile]:
        """Images saved to the output folder; temp previews only when nothing was saved."""
        images = [f for f in self.files if f.kind == "image"]
        saved = [f for f in images if f.type == "output"]
        return saved or images

    @property
    def text(self) -> dict[str, list[str]]:
        """Text outputs per node (``PreviewAny`` and similar)."""
        return {
            n: list(o["text"]) for n, o in self.outputs.items() if isinstance(o.get("text"), list)
        }

    def for_node(self, node_id: str) -> list[AsyncOutputFile]:
        """Files produced by one node."""
        return [f for f in self.files if f.node_id == str(node_id)]

    def __repr__(self) -> str:
        return f"<Result {self.prompt_id} nodes={sorted(self.outputs)} files={len(self.files)}>"


def _iter_file_refs(
    outputs: dict[str, dict[str, Any]],
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for node, ui in outputs.items():
        for key, value in ui.items():
            if not isinstance(value, list):
                continue
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    yield node, key, item
