"""The ``comfykit`` command: generate images, run workflow files, convert and inspect.

::

    comfykit generate "a lighthouse at dusk" -W 512 -H 512 --steps 20 -o out/
    comfykit run workflow.json --set "KSampler.seed=42" --set 6.text="a red fox" -o out/
    comfykit convert ui.json -o api.json [--url URL | --catalog snapshot.json]
    comfykit codegen -o nodes.py [--url URL | --catalog snapshot.json]
    comfykit catalog -o snapshot.json
    comfykit drift snapshot.json
    comfykit info

``--url`` defaults to ``$COMFYUI_URL``, then ``http://127.0.0.1:8188``. Results go to stdout
(one written path per line; ``--json`` for a machine-readable summary), everything else to
stderr. Errors print one readable message (no traceback) to stderr.

Exit codes:
    0: success.
    1: the job failed on the server (``ExecutionError``, ``JobInterrupted``, ``JobLost``);
       for ``drift``: the server's nodes differ from the snapshot.
    2: usage or bad input: bad arguments, ``InputError``, ``WorkflowError``,
       ``PromptValidationError``, an unreadable or malformed file.
    3: the server cannot be reached or did not answer in time (``ComfyConnectionError``,
       ``ComfyTimeoutError``, including a job that outlived ``--timeout``).
    4: any other error from the server (``APIStatusError``).
    130: interrupted with Ctrl-C (a job started by ``run`` is cancelled first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfykit._config import DEFAULT_URL
from comfykit._exceptions import (
    APIStatusError,
    ComfyConnectionError,
    ComfyError,
    ComfyTimeoutError,
    FileSaveError,
    InputError,
    JobError,
    NotFoundError,
    PromptValidationError,
    WorkflowError,
)
from comfykit._files import check_writable_dir
from comfykit._version import __version__

if TYPE_CHECKING:
    from comfykit._sync.client import ComfyClient
    from comfykit._sync.jobs import Job
    from comfykit.graph import NodeCatalog

__all__ = [
    "EXIT_JOB_FAILED",
    "EXIT_OK",
    "EXIT_SERVER_ERROR",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "build_parser",
    "exit_code",
    "main",
]

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_SERVER_ERROR = 4
EXIT_INTERRUPTED = 130

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_EPILOG = """\
exit codes:
  0    success
  1    the job failed on the server (execution error, interrupted, lost)
  2    usage or bad input (arguments, workflow, validation)
  3    cannot reach the server (or it timed out)
  4    other server error
  130  interrupted (Ctrl-C)

--url defaults to $COMFYUI_URL, then http://127.0.0.1:8188."""


def exit_code(exc: BaseException) -> int:
    """The exit code ``comfykit`` returns for an error (see the module docstring)."""
    if isinstance(exc, JobError):
        return EXIT_JOB_FAILED
    if isinstance(exc, (InputError, WorkflowError, PromptValidationError, FileSaveError)):
        return EXIT_USAGE
    if isinstance(exc, ComfyConnectionError):
        return EXIT_UNREACHABLE
    if isinstance(exc, (APIStatusError, ComfyError)):
        return EXIT_SERVER_ERROR
    if isinstance(exc, OSError):
        return EXIT_USAGE
    return EXIT_SERVER_ERROR


# --------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``comfykit`` command."""
    parser = argparse.ArgumentParser(
        prog="comfykit",
        description="Generate images and run workflows on a ComfyUI server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"comfykit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    server = argparse.ArgumentParser(add_help=False)
    server.add_argument(
        "--url",
        default=None,
        help=f"the ComfyUI server (default: $COMFYUI_URL, then {DEFAULT_URL})",
    )
    job = argparse.ArgumentParser(add_help=False)
    job.add_argument(
        "-o",
        "--output-dir",
        default=".",
        type=Path,
        help="directory the files are written to (created; never overwrites; default: .)",
    )
    job.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the job; then it is cancelled on the server",
    )
    job.add_argument(
        "--keep-on-timeout",
        action="store_true",
        help="leave the job running on the server when --timeout runs out",
    )
    job.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )
    job.add_argument("--json", action="store_true", help="print a JSON summary on stdout")

    gen = sub.add_parser(
        "generate",
        parents=[server, job],
        help="text to image with the server's checkpoint",
        description="Text to image. Prints the written paths, then the seed.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gen.add_argument("prompt", help="what to draw")
    gen.add_argument("--negative", default="", help="negative prompt")
    gen.add_argument("--model", default=None, help="checkpoint (default: the server's only one)")
    gen.add_argument("-W", "--width", type=int, default=512, help="multiple of 8 (default 512)")
    gen.add_argument("-H", "--height", type=int, default=512, help="multiple of 8 (default 512)")
    gen.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    gen.add_argument("--cfg", type=float, default=7.0, help="CFG scale (default 7.0)")
    gen.add_argument("--sampler", default="euler", help="sampler name or alias (euler_a, ...)")
    gen.add_argument("--scheduler", default="normal", help="scheduler (default normal)")
    gen.add_argument("--seed", type=int, default=None, help="seed (default: random)")
    gen.add_argument("--batch-size", type=int, default=1, help="images per run (default 1)")
    gen.set_defaults(handler=_cmd_generate)

    run = sub.add_parser(
        "run",
        parents=[server, job],
        help="run a workflow file (API or UI format, or a ComfyUI PNG)",
        description=(
            "Run a workflow file: an API-format prompt, an editor-saved (UI-format) workflow, or "
            "a PNG ComfyUI saved. Downloads every output file and prints the paths."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("workflow", help="the workflow file ('-' reads stdin)")
    run.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NODE.INPUT=VALUE",
        help="set an input; NODE is a node id or title, VALUE is JSON if it parses, else a "
        "string (repeatable)",
    )
    run.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="skip the check against the server's node catalog before sending",
    )
    run.set_defaults(handler=_cmd_run)

    catalog_source = argparse.ArgumentParser(add_help=False)
    source = catalog_source.add_mutually_exclusive_group()
    source.add_argument(
        "--url",
        default=None,
        help=f"read the node catalog from this server (default: $COMFYUI_URL, then {DEFAULT_URL})",
    )
    source.add_argument(
        "--catalog", type=Path, default=None, help="a saved NodeCatalog snapshot instead"
    )

    convert = sub.add_parser(
        "convert",
        parents=[catalog_source],
        help="convert a UI-format workflow to the API format",
        description="Convert an editor-saved workflow (or a ComfyUI PNG) to an API prompt.",
    )
    convert.add_argument("input", help="UI-format workflow JSON or PNG ('-' reads stdin)")
    convert.add_argument(
        "-o", "--output", type=Path, default=None, help="where to write (default: stdout)"
    )
    convert.set_defaults(handler=_cmd_convert)

    codegen = sub.add_parser(
        "codegen",
        parents=[catalog_source],
        help="write typed node stubs for the server's node catalog",
    )
    codegen.add_argument(
        "-o", "--output", type=Path, default=None, help="where to write (default: stdout)"
    )
    codegen.add_argument(
        "--max-literal",
        type=int,
        default=256,
        metavar="N",
        help="type combos with more than N choices as str instead of a Literal (default 256)",
    )
    codegen.set_defaults(handler=_cmd_codegen)

    snapshot = sub.add_parser(
        "catalog",
        parents=[server],
        help="save the server's node catalog as a snapshot (for --catalog and drift)",
    )
    snapshot.add_argument("-o", "--output", type=Path, required=True, help="snapshot file")
    snapshot.set_defaults(handler=_cmd_catalog)

    drift = sub.add_parser(
        "drift",
        parents=[server],
        help="compare a saved catalog snapshot with the live server (exit 1 on drift)",
    )
    drift.add_argument("snapshot", type=Path, help="a snapshot written by 'comfykit catalog'")
    drift.add_argument("--json", action="store_true", help="print JSON instead of text")
    drift.add_argument(
        "--choices",
        action="store_true",
        help="also report changed combo choices (file lists change whenever files do)",
    )
    drift.set_defaults(handler=_cmd_drift)

    info = sub.add_parser(
        "info",
        parents=[server],
        help="server version, devices, models and queue",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=_cmd_info)

    # comfykit.server (FastAPI, heavy and optional) is imported only when `serve` runs.
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--database-url", default=None, help="job store URL (default: SQLite)")
    store.add_argument("--data-dir", default=None, help="default: the user data dir")
    serve = sub.add_parser(
        "serve",
        parents=[store],
        help="run the REST service (extra comfykit[server])",
        description="Run the comfykit REST service with uvicorn. Every flag is also an "
        "environment variable with the prefix COMFYKIT_ (flags win).",
    )
    serve.add_argument(
        "--comfyui-url", action="append", default=None, metavar="URL",
        help="a ComfyUI server (repeatable; env COMFYKIT_COMFYUI_URLS, comma-separated; "
        f"default $COMFYUI_URL, else {DEFAULT_URL})",
    )  # fmt: skip
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--storage-dir", default=None, help="outputs, uploads (default: data dir)")
    serve.add_argument("--retention-days", type=float, default=None, help="keep outputs N days")
    serve.add_argument(
        "--auth", choices=["none", "required"], default=None,
        help="none (loopback only; the default) or required (API keys or JWTs)",
    )  # fmt: skip
    serve.add_argument(
        "--insecure-no-auth", action="store_true", default=None,
        help="serve without authentication on a non-loopback --host anyway",
    )  # fmt: skip
    serve.add_argument(
        "--local", action="store_true", help="start the local CPU ComfyUI of comfykit.testing"
    )
    serve.set_defaults(handler=_service_command)

    worker = sub.add_parser(
        "worker",
        parents=[store],
        help="run the service's jobs without HTTP (with API replicas on COMFYKIT_DISPATCH=false)",
        description="Feed ComfyUI from the service's job store (PostgreSQL, shared with the API "
        "replicas) and send its webhooks; no HTTP. Every flag is also a COMFYKIT_ variable.",
    )
    worker.add_argument(
        "--comfyui-url", action="append", default=None, metavar="URL",
        help="a ComfyUI server (repeatable; env COMFYKIT_COMFYUI_URLS)",
    )  # fmt: skip
    worker.add_argument("--storage-dir", default=None, help="outputs, uploads (shared)")
    worker.set_defaults(handler=_service_command)

    keys = sub.add_parser(
        "keys",
        help="create, list and revoke the service's API keys",
        description="Manage the API keys of the comfykit service (the same store as "
        "`comfykit serve`: pass the same --data-dir / --database-url).",
    )
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    create = keys_sub.add_parser(
        "create", parents=[store], help="create a key and print it (shown this once)"
    )
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--role", choices=["free", "pro", "admin"], default="free")
    create.add_argument("--owner", default=None, help="the user its jobs belong to (default: name)")
    create.add_argument("--json", action="store_true", help="print the key's record as JSON")
    listing = keys_sub.add_parser("list", parents=[store], help="list the keys (never the keys)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = keys_sub.add_parser("revoke", parents=[store], help="revoke a key by its id")
    revoke.add_argument("key_id", metavar="ID")
    keys.set_defaults(handler=_service_command)
    return parser


# --------------------------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``comfykit`` command; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # argparse: --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:  # bare `comfykit`: say what it can do
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ComfyError as exc:
        _error(_describe(exc))
        return exit_code(exc)
    except OSError as exc:
        _error(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def _describe(exc: ComfyError) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, JobError):
        text += f"\n(prompt {exc.prompt_id})"
    elif isinstance(exc, ComfyConnectionError) and not isinstance(exc, ComfyTimeoutError):
        text += "\nIs ComfyUI running there? Pass --url or set COMFYUI_URL."
    return text


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _error(message: str) -> None:
    sys.stderr.write(f"comfykit: error: {message}\n")
    sys.stderr.flush()


def _note(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def _url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("COMFYUI_URL") or DEFAULT_URL)


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[ComfyClient]:
    from comfykit._sync.client import ComfyClient

    with ComfyClient(_url(args)) as comfy:
        yield comfy


def _want_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


# --------------------------------------------------------------------------------------------
# generate


def _cmd_generate(args: argparse.Namespace) -> int:
    check_writable_dir(args.output_dir, create=False)  # before the job runs, not after
    with _client(args) as comfy:
        result = comfy.generate(
            args.prompt,
            negative_prompt=args.negative,
            model=args.model,
            width=args.width,
            height=args.height,
            steps=args.steps,
            cfg_scale=args.cfg,
            sampler=args.sampler,
            scheduler=args.scheduler,
            seed=args.seed,
            batch_size=args.batch_size,
            timeout=args.timeout,
            cancel_on_timeout=not args.keep_on_timeout,
            progress=_want_progress(args),
        )
        paths = result.save(args.output_dir)
    request = result.metadata.get("request") or {}
    if args.json:
        summary = {
            "prompt_id": result.prompt_id,
            "seed": result.seed,
            "model": request.get("model"),
            "sampler": request.get("sampler"),
            "scheduler": request.get("scheduler"),
            "files": [str(p) for p in paths],
        }
        _out(json.dumps(summary, indent=2))
        return EXIT_OK
    for path in paths:
        _out(str(path))
    _out(f"seed {result.seed}")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# run / convert: reading workflow files


def _read_bytes(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from exc


def _load_document(name: str) -> tuple[str, dict[str, Any]]:
    """``("api" | "ui", data)`` from a JSON file or a PNG that ComfyUI saved."""
    from comfykit.graph.ui_format import is_api_prompt, is_ui_workflow

    raw = _read_bytes(name)
    label = "stdin" if name == "-" else name
    if raw.startswith(_PNG_SIGNATURE):
        from comfykit.graph.png_metadata import read_png_workflows

        found = read_png_workflows(raw)
        if found.prompt is not None and is_api_prompt(found.prompt):
            return "api", found.prompt
        if found.workflow is not None and is_ui_workflow(found.workflow):
            return "ui", found.workflow
        raise InputError(f"{label}: the PNG holds no usable ComfyUI workflow")
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{label} is not a JSON file (not UTF-8 text)") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{label} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from exc
    if is_ui_workflow(data):
        return "ui", data
    if is_api_prompt(data):
        return "api", data
    if isinstance(data, dict) and is_api_prompt(data.get("prompt")):  # a saved /prompt body
        return "api", data["prompt"]
    raise InputError(
        f"{label} is neither an API-format prompt ({{'<id>': {{'class_type': ...}}}}) nor an "
        "editor-saved workflow (with a 'nodes' list)"
    )


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _apply_assignments(workflow: Any, assignments: Sequence[str]) -> None:
    """Apply ``NODE.INPUT=VALUE`` settings to a :class:`~comfykit.Workflow`."""
    for item in assignments:
        target, eq, raw = item.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not eq or not dot or not node_ref or not input_name:
            raise InputError(
                f"--set {item!r}: expected NODE.INPUT=VALUE (NODE is a node id or title)"
            )
        node = workflow.node(node_ref)
        workflow.set(node, {input_name: _parse_value(raw)})


def _cmd_run(args: argparse.Namespace) -> int:
    from comfykit.graph import Workflow
    from comfykit.graph.ui_format import ui_to_api

    kind, data = _load_document(args.workflow)
    check_writable_dir(args.output_dir, create=False)  # before the job runs, not after
    with _client(args) as comfy:
        catalog = comfy.catalog() if kind == "ui" or args.validate else None
        api = ui_to_api(data, catalog) if kind == "ui" and catalog is not None else data
        workflow = Workflow.from_api(api, catalog=catalog)
        _apply_assignments(workflow, args.assignments)
        extra = {"extra_pnginfo": {"workflow": data}} if kind == "ui" else None
        started = time.monotonic()
        job = comfy.submit(workflow.to_api(), validate=args.validate, extra_data=extra)
        for problem in job.node_errors:
            _note(f"warning: the server dropped an output: {problem}")
        try:
            result = _follow(job, args)
        except KeyboardInterrupt:
            with contextlib.suppress(ComfyError):
                job.cancel()
            raise
        written: list[Path] = []
        for file in result.files:
            path = comfy.download(file, args.output_dir)
            assert isinstance(path, Path)
            written.append(path)
    elapsed = time.monotonic() - started
    if args.json:
        summary = {
            "prompt_id": job.prompt_id,
            "files": [str(p) for p in written],
            "text": result.text,
            "cached_nodes": list(result.cached_nodes),
            "seconds": round(elapsed, 3),
        }
        _out(json.dumps(summary, indent=2))
        return EXIT_OK
    for path in written:
        _out(str(path))
    for node_id, texts in result.text.items():
        for text in texts:
            _out(f"node {node_id}: {text}")
    _note(f"prompt {job.prompt_id} finished in {elapsed:.1f} s, {len(written)} file(s)")
    return EXIT_OK


def _follow(job: Job, args: argparse.Namespace) -> Any:
    from comfykit._progress import ProgressReporter

    reporter = ProgressReporter(bar=_want_progress(args), description="run")
    cancel = not args.keep_on_timeout
    try:
        if reporter.active:
            events = job.events(
                timeout=args.timeout, cancel_on_timeout=cancel, on_queued=reporter.on_queued
            )
            for event in events:
                reporter(event)
        return job.result(timeout=args.timeout, cancel_on_timeout=cancel)
    finally:
        reporter.close()


# --------------------------------------------------------------------------------------------
# convert / codegen


def _catalog(args: argparse.Namespace) -> NodeCatalog:
    from comfykit.graph import NodeCatalog

    if args.catalog is not None:
        return NodeCatalog.load(args.catalog)
    with _client(args) as comfy:
        return comfy.catalog()


def _write_text(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    if output.parent != Path():
        output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    _note(f"wrote {output}")


def _cmd_convert(args: argparse.Namespace) -> int:
    from comfykit.graph.ui_format import ui_to_api

    kind, data = _load_document(args.input)
    if kind == "api":
        _note("the input is already in the API format; writing it unchanged")
        api = data
    else:
        api = ui_to_api(data, _catalog(args))
    _write_text(json.dumps(api, indent=2, ensure_ascii=False), args.output)
    return EXIT_OK


def _cmd_codegen(args: argparse.Namespace) -> int:
    from comfykit.graph.codegen import render_stubs

    if args.max_literal < 0:
        raise InputError(f"--max-literal must be >= 0, got {args.max_literal}")
    source = f"the snapshot {args.catalog.name}" if args.catalog is not None else _url(args)
    text = render_stubs(
        _catalog(args), module_doc=f"Source: {source}.", max_literal=args.max_literal
    )
    _write_text(text, args.output)
    return EXIT_OK


def _cmd_catalog(args: argparse.Namespace) -> int:
    with _client(args) as comfy:
        catalog = comfy.catalog(refresh=True)
    catalog.save(args.output)
    _note(
        f"wrote {args.output} ({len(catalog)} node classes, fingerprint {catalog.fingerprint[:12]})"
    )
    return EXIT_OK


def _cmd_drift(args: argparse.Namespace) -> int:
    from comfykit.graph import NodeCatalog

    saved = NodeCatalog.load(args.snapshot)
    with _client(args) as comfy:
        live = comfy.catalog(refresh=True)
    diff = saved.diff(live, choices=args.choices)
    if args.json:
        _out(json.dumps({
            "added": sorted(diff.added),
            "removed": sorted(diff.removed),
            "changed": sorted(diff.changed),
        }, indent=2))  # fmt: skip
    else:
        _out(str(diff) if diff else "no drift: the server's nodes match the snapshot")
    return EXIT_JOB_FAILED if diff else EXIT_OK


# --------------------------------------------------------------------------------------------
# info


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 2**30:.1f} GiB"


def _service_command(args: argparse.Namespace) -> int:
    """``serve`` and ``keys``: in :mod:`comfykit.server.cli`, imported only when they run."""
    try:
        from comfykit.server import cli as server_cli
    except ImportError as exc:
        _error(
            f"comfykit {args.command} needs the server extra: pip install 'comfykit[server]' "
            f"({exc})"
        )
        return EXIT_USAGE
    handler: Callable[[argparse.Namespace], int] = getattr(server_cli, args.command)
    return handler(args)


def _cmd_info(args: argparse.Namespace) -> int:
    with _client(args) as comfy:
        stats = comfy.system_stats()
        queue = comfy.queue()
        models: dict[str, list[str]] = {}
        for folder in comfy.models():
            try:
                models[folder] = comfy.models(folder)
            except NotFoundError:
                continue
        base_url = comfy.base_url
    system = stats.system
    if args.json:
        data = {
            "url": base_url,
            "system": system.model_dump(mode="json"),
            "devices": [d.model_dump(mode="json") for d in stats.devices],
            "queue": {"running": len(queue.running), "pending": len(queue.pending)},
            "models": models,
        }
        _out(json.dumps(data, indent=2))
        return EXIT_OK
    _out(f"ComfyUI {system.comfyui_version or '?'} at {base_url}")
    _out(f"  python {(system.python_version or '?').split()[0]}, pytorch "
         f"{system.pytorch_version or '?'}, {system.os or '?'}")  # fmt: skip
    _out(f"  RAM: {_size(system.ram_free)} free of {_size(system.ram_total)}")
    _out("devices:")
    for device in stats.devices:
        _out(
            f"  {device.name} ({device.type}): VRAM {_size(device.vram_free)} free of "
            f"{_size(device.vram_total)}"
        )
    if not stats.devices:
        _out("  none reported")
    _out(f"queue: {len(queue.running)} running, {len(queue.pending)} pending")
    _out("models:")
    for folder, names in models.items():
        _out(f"  {folder}: {len(names)}")
        if folder == "checkpoints":
            for name in names:
                _out(f"    {name}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
