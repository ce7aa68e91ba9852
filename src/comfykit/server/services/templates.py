"""Workflow templates: a workflow plus declared parameters (name → node input), their type,
default, bounds and choices taken from the node catalog, a JSON Schema per template, and the
built-in templates made from the SDK's recipes (txt2img, img2img, inpaint, upscale)."""

from __future__ import annotations

import copy
import random
import uuid
from typing import TYPE_CHECKING, Any

from comfykit import ComfyConnectionError, WorkflowError, recipes
from comfykit.generation import SAMPLER_ALIASES, resolve_model
from comfykit.graph import NodeCatalog
from comfykit.server.errors import ServiceError
from comfykit.server.schemas import TemplateBody, TemplateParameter, TemplateResponse
from comfykit.server.store import JobRow, TemplateRow, utcnow

if TYPE_CHECKING:
    from comfykit.server.auth import Principal
    from comfykit.server.services.dispatcher import Dispatcher
    from comfykit.server.services.jobs import JobService
    from comfykit.server.settings import Settings
    from comfykit.server.store import Store

__all__ = ["BUILTIN_IDS", "TemplateService", "builtin_templates"]

BUILTIN_IDS = ("txt2img", "img2img", "inpaint", "upscale")
_MODEL_PLACEHOLDER = "model.safetensors"
_IMAGE_PLACEHOLDER = "image.png"


def _sampling_params(wf: Any, *, size: bool) -> dict[str, TemplateParameter]:
    def p(title: str, input_name: str, **kw: Any) -> TemplateParameter:
        return TemplateParameter(node=wf.node(title).id, input=input_name, **kw)

    params = {
        "prompt": p("Positive", "text", type="string", required=True, default=None,
                    description="what to draw"),
        "negative_prompt": p("Negative", "text", type="string", default=""),
        "model": p("Checkpoint", "ckpt_name", type="string",
                   description="checkpoint; default: the configured or the only one"),
        "seed": p("Sampler", "seed", type="integer", description="default: random"),
        "steps": p("Sampler", "steps", type="integer", default=20),
        "cfg_scale": p("Sampler", "cfg", type="number", default=7.0),
        "sampler": p("Sampler", "sampler_name", type="string", default="euler"),
        "scheduler": p("Sampler", "scheduler", type="string", default="normal"),
        "denoise": p("Sampler", "denoise", type="number"),
    }  # fmt: skip
    if size:
        params["width"] = p("Latent", "width", type="integer", default=512)
        params["height"] = p("Latent", "height", type="integer", default=512)
        params["batch_size"] = p("Latent", "batch_size", type="integer", default=1)
    return params


def builtin_templates() -> dict[str, tuple[str, str, dict[str, Any], dict[str, TemplateParameter]]]:
    """``id → (name, description, workflow, parameters)`` of the built-in templates."""
    out: dict[str, tuple[str, str, dict[str, Any], dict[str, TemplateParameter]]] = {}
    wf = recipes.txt2img(prompt="a photo", model=_MODEL_PLACEHOLDER)
    params = _sampling_params(wf, size=True)
    params["denoise"] = params["denoise"].model_copy(update={"default": 1.0})
    out["txt2img"] = ("txt2img", "Text to image (the SDK's txt2img recipe).", wf.to_api(), params)

    wf = recipes.img2img(image=_IMAGE_PLACEHOLDER, prompt="a photo", model=_MODEL_PLACEHOLDER)
    params = _sampling_params(wf, size=False)
    params["denoise"] = params["denoise"].model_copy(update={"default": 0.75})
    params["image"] = TemplateParameter(
        node=wf.node("Image").id, input="image", type="image", required=True,
        description="upload id of the input image",
    )  # fmt: skip
    out["img2img"] = ("img2img", "Image to image (the SDK's img2img recipe).", wf.to_api(), params)

    wf = recipes.inpaint(
        image=_IMAGE_PLACEHOLDER, mask=_IMAGE_PLACEHOLDER, prompt="a photo",
        model=_MODEL_PLACEHOLDER,
    )  # fmt: skip
    params = _sampling_params(wf, size=False)
    params["denoise"] = params["denoise"].model_copy(update={"default": 1.0})
    params["image"] = TemplateParameter(
        node=wf.node("Image").id, input="image", type="image", required=True,
        description="upload id of the image to repaint",
    )  # fmt: skip
    params["mask"] = TemplateParameter(
        node=wf.node("Mask").id, input="image", type="image", required=True,
        description="upload id of the mask (red channel: white = repaint)",
    )  # fmt: skip
    out["inpaint"] = ("inpaint", "Inpainting (the SDK's inpaint recipe).", wf.to_api(), params)

    wf = recipes.upscale(image=_IMAGE_PLACEHOLDER, scale_by=2.0)
    params = {
        "image": TemplateParameter(
            node=wf.node("Image").id, input="image", type="image", required=True,
            description="upload id of the image to upscale",
        ),
        "scale_by": TemplateParameter(
            node=wf.node("Upscale").id, input="scale_by", type="number", default=2.0
        ),
        "method": TemplateParameter(
            node=wf.node("Upscale").id, input="upscale_method", type="string", default="lanczos"
        ),
    }  # fmt: skip
    out["upscale"] = ("upscale", "Upscale without a model (the SDK's upscale recipe).",
                      wf.to_api(), params)  # fmt: skip
    return out


def _type_of(spec: Any) -> str:
    if spec.upload == "image":
        return "image"
    if spec.is_combo:
        return "string"
    return {"INT": "integer", "FLOAT": "number", "BOOLEAN": "boolean"}.get(spec.type, "string")


def resolve_parameters(
    workflow: dict[str, Any], params: dict[str, TemplateParameter], catalog: NodeCatalog | None
) -> dict[str, TemplateParameter]:
    """Each parameter with its type, default, bounds and choices from the catalog (400
    naming the parameter when its node or input does not exist)."""
    out: dict[str, TemplateParameter] = {}
    for name, param in params.items():
        node = workflow.get(param.node)
        if not isinstance(node, dict):
            raise ServiceError(400, f"parameters.{name}: node {param.node} is not in the workflow")
        class_type = str(node.get("class_type"))
        spec = catalog.get(class_type) if catalog is not None else None
        if catalog is not None and spec is None:
            raise ServiceError(400, f"parameters.{name}: unknown node class {class_type}")
        inp = spec.input(param.input) if spec is not None else None
        if spec is not None and inp is None:
            raise ServiceError(
                400, f"parameters.{name}: node {param.node} ({class_type}) has no input "
                f"{param.input!r}",
            )  # fmt: skip
        update: dict[str, Any] = {}
        if inp is not None:
            kind = param.type or _type_of(inp)
            update["type"] = kind
            if kind in ("integer", "number"):
                if param.minimum is None and isinstance(inp.min, (int, float)):
                    update["minimum"] = inp.min
                if param.maximum is None and isinstance(inp.max, (int, float)):
                    update["maximum"] = inp.max
            if kind != "image" and param.choices is None and inp.choices is not None:
                update["choices"] = list(inp.choices)
            current = node.get("inputs", {}).get(param.input)
            if (
                param.default is None
                and not param.required
                and kind != "image"
                and not isinstance(current, list)
            ):
                default = current if current is not None else inp.default
                if default is not None:
                    update["default"] = default
        out[name] = param.model_copy(update=update)
    return out


def json_schema(params: dict[str, TemplateParameter]) -> dict[str, Any]:
    """The JSON Schema of a template's ``parameters`` object."""
    props: dict[str, Any] = {}
    required = []
    for name, p in params.items():
        prop: dict[str, Any] = {}
        if p.type == "image":
            prop = {"type": "string", "format": "upload-id", "description": p.description
                    or "an upload id (POST /api/v1/uploads)"}  # fmt: skip
        else:
            if p.type:
                prop["type"] = p.type
            if p.description:
                prop["description"] = p.description
            if p.default is not None:
                prop["default"] = p.default
            if p.minimum is not None:
                prop["minimum"] = p.minimum
            if p.maximum is not None:
                prop["maximum"] = p.maximum
            if p.choices is not None:
                prop["enum"] = p.choices
        props[name] = prop
        if p.required:
            required.append(name)
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


def _fmt(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


class TemplateService:
    """Stored and built-in templates, and running them."""

    def __init__(
        self, settings: Settings, store: Store, dispatcher: Dispatcher, jobs: JobService
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.jobs = jobs
        self._builtins = builtin_templates()

    async def _catalog(self, required: bool) -> NodeCatalog | None:
        try:
            return await self.dispatcher.catalog()
        except ComfyConnectionError:
            if required:
                raise
            return None

    def _response(
        self,
        template_id: str,
        name: str,
        description: str,
        workflow: dict[str, Any],
        params: dict[str, TemplateParameter],
        *,
        builtin: bool,
        row: TemplateRow | None = None,
    ) -> TemplateResponse:
        return TemplateResponse(
            id=template_id,
            name=name,
            description=description,
            builtin=builtin,
            workflow=workflow,
            parameters=params,
            schema=json_schema(params),
            webhook_url=row.webhook_url if row else None,
            created_at=row.created_at if row else None,
            updated_at=row.updated_at if row else None,
        )

    async def _builtin(self, template_id: str, catalog: NodeCatalog | None) -> TemplateResponse:
        name, description, workflow, params = self._builtins[template_id]
        resolved = resolve_parameters(workflow, params, catalog)
        if "model" in resolved:
            resolved["model"] = resolved["model"].model_copy(update={"default": None})
        if "seed" in resolved:
            resolved["seed"] = resolved["seed"].model_copy(update={"default": None})
        if "image" in resolved or "mask" in resolved:
            for key in ("image", "mask"):
                if key in resolved:
                    resolved[key] = resolved[key].model_copy(update={"choices": None})
        return self._response(template_id, name, description, workflow, resolved, builtin=True)

    async def list(self) -> list[TemplateResponse]:
        """Built-ins first, then the stored templates."""
        catalog = await self._catalog(required=False)
        out = [await self._builtin(t, catalog) for t in BUILTIN_IDS]
        for row in await self.store.list_templates():
            out.append(self._from_row(row))
        return out

    def _from_row(self, row: TemplateRow) -> TemplateResponse:
        params = {k: TemplateParameter.model_validate(v) for k, v in row.parameters.items()}
        return self._response(
            row.id, row.name, row.description, row.workflow, params, builtin=False, row=row
        )

    async def get(self, template_id: str) -> TemplateResponse:
        """One template (404 when unknown)."""
        if template_id in self._builtins:
            return await self._builtin(template_id, await self._catalog(required=False))
        row = await self.store.get_template(template_id)
        if row is None:
            raise ServiceError(404, f"no workflow template {template_id}")
        return self._from_row(row)

    async def _checked(self, body: TemplateBody) -> tuple[dict[str, Any], dict[str, Any]]:
        catalog = await self._catalog(required=True)
        assert catalog is not None
        workflow = await self.jobs.api_workflow_from(body.workflow)
        params = resolve_parameters(workflow, body.parameters, catalog)
        return workflow, {k: v.model_dump() for k, v in params.items()}

    async def create(self, body: TemplateBody) -> TemplateResponse:
        """Store a new template (its workflow and parameters checked against the catalog,
        its ``webhook_url`` by the SSRF rule)."""
        webhook_url = await self.jobs.webhook_url(body.webhook_url)
        workflow, params = await self._checked(body)
        now = utcnow()
        row = TemplateRow(
            id=str(uuid.uuid4()), name=body.name, description=body.description,
            workflow=workflow, parameters=params, webhook_url=webhook_url, created_at=now,
            updated_at=now,
        )  # fmt: skip
        return self._from_row(await self.store.put_template(row))

    async def replace(self, template_id: str, body: TemplateBody) -> TemplateResponse:
        """Replace a stored template (409 for a built-in)."""
        if template_id in self._builtins:
            raise ServiceError(409, f"{template_id} is a built-in template and cannot change")
        old = await self.store.get_template(template_id)
        if old is None:
            raise ServiceError(404, f"no workflow template {template_id}")
        webhook_url = await self.jobs.webhook_url(body.webhook_url)
        workflow, params = await self._checked(body)
        row = TemplateRow(
            id=template_id, name=body.name, description=body.description, workflow=workflow,
            parameters=params, webhook_url=webhook_url, created_at=old.created_at,
            updated_at=utcnow(),
        )  # fmt: skip
        return self._from_row(await self.store.put_template(row))

    async def delete(self, template_id: str) -> None:
        """Delete a stored template (409 for a built-in, 404 when unknown)."""
        if template_id in self._builtins:
            raise ServiceError(409, f"{template_id} is a built-in template and cannot be deleted")
        if not await self.store.delete_template(template_id):
            raise ServiceError(404, f"no workflow template {template_id}")

    async def execute(
        self,
        template_id: str,
        values: dict[str, Any],
        who: Principal | None = None,
        *,
        webhook_url: str | None = None,
        base: str = "",
    ) -> JobRow:
        """Validate the parameter values, fill them in, and queue the job (``who``'s: its
        image parameters must be its own uploads). Its webhook is ``webhook_url``, else the
        template's (checked again: DNS can change); ``base`` is the mount prefix."""
        template = await self.get(template_id)
        url = await self.jobs.webhook_url(webhook_url or template.webhook_url)
        catalog = await self._catalog(required=True)
        params = template.parameters
        unknown = sorted(set(values) - set(params))
        if unknown:
            raise ServiceError(
                400,
                f"parameters.{unknown[0]} is not a parameter of {template_id} "
                f"(known: {', '.join(params)})",
                details=[{"field": f"parameters.{u}", "rule": "unknown"} for u in unknown],
            )
        workflow = copy.deepcopy(template.workflow)
        uploads: dict[str, dict[str, str]] = {}
        used: dict[str, Any] = {}
        for name, p in params.items():
            value = values.get(name, p.default)
            if template.builtin and name == "model":
                checkpoints = await self.dispatcher.checkpoints()
                value = resolve_model(value or self.settings.default_model, checkpoints)
            if template.builtin and name == "seed" and value is None:
                value = random.randrange(2**32)
            if template.builtin and name == "sampler" and isinstance(value, str):
                value = SAMPLER_ALIASES.get(value.lower(), value)
            if value is None:
                if p.required:
                    raise ServiceError(
                        400, f"parameters.{name} is required",
                        details=[{"field": f"parameters.{name}", "rule": "missing"}],
                    )  # fmt: skip
                continue
            await self._check_value(name, p, value, who)
            if p.type == "image":
                uploads.setdefault(p.node, {})[p.input] = str(value)
                workflow[p.node]["inputs"][p.input] = _IMAGE_PLACEHOLDER
            else:
                workflow[p.node]["inputs"][p.input] = value
            used[name] = value
        assert catalog is not None
        skip = {(n, i) for n, inputs in uploads.items() for i in inputs}
        problems = [
            pr for pr in catalog.problems(workflow) if (pr.node_id, pr.input_name) not in skip
        ]
        if problems:
            raise WorkflowError(problems)
        meta: dict[str, Any] = {"parameters": used, "graph": workflow, "timings": {}}
        for key in ("seed", "model"):
            if key in used:
                meta[key] = used[key]
        batch_size = used.get("batch_size")
        row = self.jobs.new_row(
            kind="template", workflow=workflow, meta=meta, uploads=uploads,
            template_id=template_id, owner=who, webhook_url=url, base=base,
            images=batch_size if isinstance(batch_size, int) and batch_size > 0 else 1,
        )  # fmt: skip
        await self.jobs.enqueue([row], who)
        return row

    async def _check_value(
        self, name: str, p: TemplateParameter, value: Any, who: Principal | None
    ) -> None:
        where = f"parameters.{name}"

        def bad(message: str, rule: str) -> ServiceError:
            return ServiceError(400, f"{where} {message}", details=[{"field": where, "rule": rule}])

        kind = p.type
        if kind == "integer" and (not isinstance(value, int) or isinstance(value, bool)):
            raise bad("must be an integer", "type")
        if kind == "number" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise bad("must be a number", "type")
        if kind == "boolean" and not isinstance(value, bool):
            raise bad("must be true or false", "type")
        if kind in ("string", "image") and not isinstance(value, str):
            raise bad("must be a string", "type")
        if kind == "image":
            upload = await self.store.get_upload(value)
            if upload is None or (who is not None and not who.may_see(upload.owner)):
                raise bad(f"must be an upload id (no upload {value!r})", "upload")
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = p.minimum, p.maximum
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                if lo is not None and hi is not None:
                    raise bad(f"must be between {_fmt(lo)} and {_fmt(hi)}", "range")
                if lo is not None:
                    raise bad(f"must be at least {_fmt(lo)}", "range")
                raise bad(f"must be at most {_fmt(hi)}", "range")
        if p.choices is not None and value not in p.choices:
            shown = ", ".join(str(c) for c in p.choices[:20])
            raise bad(f"must be one of {shown}", "choice")
        if isinstance(value, str) and name in ("prompt", "negative_prompt"):
            limit = self.settings.max_prompt_length
            if len(value) > limit:
                raise bad(f"must be at most {limit} characters long", "string_too_long")
