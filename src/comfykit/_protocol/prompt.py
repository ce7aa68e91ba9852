"""Building ``POST /prompt`` payloads and reading its errors (pure, shared by both clients)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Union

from comfykit._exceptions import InputError, NodeProblem, PromptValidationError

if TYPE_CHECKING:
    import httpx

    from comfykit.graph import Workflow

__all__ = ["PromptInput", "node_errors_from_body", "parse_prompt_error", "prompt_to_api"]

#: What ``submit()`` accepts: an API-format dict or a :class:`~comfykit.Workflow`.
PromptInput = Union[Mapping[str, Any], "Workflow"]


def prompt_to_api(prompt: PromptInput, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the API-format dict for ``prompt`` (a Workflow is converted, params bound)."""
    to_api = getattr(prompt, "to_api", None)
    if callable(to_api):
        api = to_api(params=params) if params is not None else to_api()
        if not isinstance(api, dict):
            raise InputError("Workflow.to_api() did not return a dict")
        return api
    if params:
        raise InputError("params= needs a Workflow with Param placeholders, not a plain dict")
    if not isinstance(prompt, Mapping):
        raise InputError(f"expected an API-format dict or a Workflow, got {type(prompt).__name__}")
    if not prompt:
        raise InputError("the prompt is empty")
    api = dict(prompt)
    if "nodes" in api and "links" in api and isinstance(api.get("nodes"), list):
        raise InputError(
            "this is an editor-saved (UI-format) workflow; convert it with "
            "Workflow.from_ui(data, await client.catalog()) first"
        )
    if "prompt" in api and isinstance(api["prompt"], Mapping) and len(api) <= 4:
        raise InputError("pass the graph itself, not a {'prompt': ...} request body")
    for node_id, node in api.items():
        if not isinstance(node, Mapping) or "class_type" not in node:
            raise InputError(
                f"node {node_id!r} is not an API-format node (needs 'class_type' and 'inputs')"
            )
    return {str(k): v for k, v in api.items()}


def _title(api: Mapping[str, Any], node_id: str) -> str | None:
    node = api.get(node_id)
    if isinstance(node, Mapping):
        meta = node.get("_meta")
        if isinstance(meta, Mapping) and isinstance(meta.get("title"), str):
            return str(meta["title"])
    return None


def node_errors_from_body(
    node_errors: Mapping[str, Any] | None, api: Mapping[str, Any]
) -> list[NodeProblem]:
    """Flatten ``node_errors`` into one :class:`NodeProblem` per problem."""
    found: list[NodeProblem] = []
    for node_id, entry in (node_errors or {}).items():
        if not isinstance(entry, Mapping):
            continue
        class_type = str(entry.get("class_type") or "")
        for err in entry.get("errors") or []:
            if not isinstance(err, Mapping):
                continue
            extra = err.get("extra_info") or {}
            extra = dict(extra) if isinstance(extra, Mapping) else {}
            input_name = extra.get("input_name")
            if input_name is None and err.get("type") == "required_input_missing":
                input_name = err.get("details") or None
            found.append(
                NodeProblem(
                    node_id=str(node_id),
                    class_type=class_type,
                    type=str(err.get("type") or ""),
                    message=str(err.get("message") or ""),
                    details=str(err.get("details") or ""),
                    input_name=str(input_name) if input_name is not None else None,
                    received_value=extra.get("received_value"),
                    extra_info=extra,
                    title=_title(api, str(node_id)),
                )
            )
    return found


def parse_prompt_error(
    body: Mapping[str, Any], api: Mapping[str, Any], response: httpx.Response | None = None
) -> PromptValidationError:
    """Build a :class:`PromptValidationError` from a 400 body of ``POST /prompt``."""
    error = body.get("error")
    if isinstance(error, str):
        error = {"type": "error", "message": error}
    if not isinstance(error, Mapping):
        error = {}
    return PromptValidationError(
        error_type=str(error.get("type") or "invalid_prompt"),
        error_message=str(error.get("message") or "the server rejected the prompt"),
        details=str(error.get("details") or ""),
        errors=node_errors_from_body(body.get("node_errors") or {}, api),
        node_errors=body.get("node_errors") or {},
        body=dict(body),
        response=response,
    )
