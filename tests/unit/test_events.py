"""The sans-I/O parser: recorded ComfyUI frames and hand-built ones become the right events.

Fixtures in ``tests/fixtures/events`` were recorded from a real ComfyUI 0.3.75 by
``scripts/record_event_fixtures.py``.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfykit._protocol.events import (
    EventBase,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionErrorEvent,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    Logs,
    NodeProgress,
    PreviewImage,
    Progress,
    ProgressState,
    ProgressText,
    Status,
    UnknownBinary,
    UnknownEvent,
    parse_binary,
    parse_event,
    parse_text,
)
from tests.recordings import FIXTURES, SCENARIOS, load

JSON_MODELS: dict[str, type[EventBase]] = {
    "status": Status,
    "feature_flags": FeatureFlags,
    "execution_start": ExecutionStart,
    "execution_cached": ExecutionCached,
    "executing": Executing,
    "progress": Progress,
    "progress_state": ProgressState,
    "executed": Executed,
    "execution_success": ExecutionSuccess,
    "execution_error": ExecutionErrorEvent,
    "execution_interrupted": ExecutionInterrupted,
    "logs": Logs,
}

JPEG_SOI = b"\xff\xd8\xff"
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def parsed(name: str) -> list[EventBase]:
    _, frames, _ = load(name)
    return [parse_binary(f) if isinstance(f, bytes) else parse_text(f) for f in frames]


def of_type(name: str, cls: type[EventBase]) -> list[Any]:
    return [e for e in parsed(name) if isinstance(e, cls)]


def binary(etype: int, *parts: bytes) -> bytes:
    return struct.pack(">I", etype) + b"".join(parts)


# -- the recorded fixtures -----------------------------------------------------------------


def test_fixtures_exist_and_are_small() -> None:
    assert set(SCENARIOS) >= {
        "cached",
        "execution_error",
        "interrupted",
        "invert",
        "partial_node_errors",
        "progress",
        "text_frame",
        "txt2img_legacy_preview",
        "txt2img_preview",
    }
    assert sum(p.stat().st_size for p in FIXTURES.glob("*.jsonl")) < 300 * 1024


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_recorded_text_frame_parses_to_its_model(name: str) -> None:
    _, frames, _ = load(name)
    texts = [f for f in frames if isinstance(f, str)]
    assert texts
    for frame in texts:
        raw = json.loads(frame)
        event = parse_text(frame)
        assert not isinstance(event, UnknownEvent), frame
        assert type(event) is JSON_MODELS[raw["type"]]
        assert event.type == raw["type"]
        data = raw["data"]
        if "prompt_id" in data:
            assert event.prompt_id == data["prompt_id"]


@pytest.mark.parametrize("name", SCENARIOS)
def test_recorded_scenarios_start_with_status_sid_and_end_with_executing_null(name: str) -> None:
    submit, _, _ = load(name)
    events = parsed(name)
    first = events[0]
    assert isinstance(first, Status)
    assert first.sid == submit["client_id"]
    assert first.queue_remaining == 0
    last = events[-1]
    assert isinstance(last, Executing)
    assert last.node is None
    assert last.prompt_id == submit["prompt_id"]


def test_broadcast_status_frames_have_no_sid() -> None:
    statuses = of_type("invert", Status)
    assert len(statuses) >= 3
    assert all(s.sid is None and s.prompt_id is None for s in statuses[1:])
    assert [s.queue_remaining for s in statuses[1:]] == [1, 1, 0]


def test_feature_flags_answer_the_handshake_only() -> None:
    (flags,) = of_type("invert", FeatureFlags)
    assert flags.flags["supports_preview_metadata"] is True
    assert isinstance(flags.flags["max_upload_size"], int)
    assert of_type("txt2img_legacy_preview", FeatureFlags) == []


def test_execution_start_and_success_carry_prompt_and_timestamp() -> None:
    submit, _, _ = load("invert")
    (start,) = of_type("invert", ExecutionStart)
    (success,) = of_type("invert", ExecutionSuccess)
    for event in (start, success):
        assert event.prompt_id == submit["prompt_id"]
        assert isinstance(event.timestamp, int)
    assert start.timestamp is not None and success.timestamp is not None
    assert success.timestamp >= start.timestamp


def test_execution_cached_lists_nodes() -> None:
    (fresh,) = of_type("invert", ExecutionCached)
    (cached,) = of_type("cached", ExecutionCached)
    assert fresh.nodes == []
    assert sorted(cached.nodes) == ["1", "2", "3", "4"]


def test_executing_nodes_and_display_nodes() -> None:
    executing = of_type("invert", Executing)
    nodes = [e.node for e in executing]
    assert nodes[-1] is None
    assert set(nodes[:-1]) == {"1", "2", "3", "4"}
    assert all(e.display_node == e.node for e in executing[:-1])
    assert executing[-1].display_node is None


def test_executed_output_images_and_text() -> None:
    executed = {e.node: e for e in of_type("invert", Executed)}
    assert executed["3"].output["images"][0]["type"] == "output"
    assert executed["3"].output["images"][0]["subfolder"] == "fixtures"
    assert executed["4"].output["images"][0]["type"] == "temp"
    assert executed["3"].display_node == "3"
    (text,) = of_type("text_frame", Executed)
    assert text.output == {"text": ["64"]}


def test_progress_events() -> None:
    submit, _, _ = load("progress")
    progress = of_type("progress", Progress)
    assert len(progress) >= 2
    assert all(p.node == "2" and p.prompt_id == submit["prompt_id"] for p in progress)
    assert all(p.max == pytest.approx(0.3) for p in progress)
    values = [p.value for p in progress]
    assert values == sorted(values)


def test_progress_state_nodes_are_typed_and_keep_extra_fields() -> None:
    submit, _, _ = load("progress")
    states = of_type("progress", ProgressState)
    assert states
    last = states[-1]
    assert set(last.nodes) == {"1", "2", "3"}
    node = last.nodes["2"]
    assert isinstance(node, NodeProgress)
    assert node.state == "finished"
    assert node.node_id == node.display_node_id == node.real_node_id == "2"
    assert node.parent_node_id is None
    # ``prompt_id`` inside each node entry is not a declared field: it is kept, not dropped.
    assert node.model_extra == {"prompt_id": submit["prompt_id"]}
    assert any(s.nodes["2"].state == "running" for s in states if "2" in s.nodes)


def test_execution_error_event() -> None:
    submit, _, _ = load("execution_error")
    (error,) = of_type("execution_error", ExecutionErrorEvent)
    assert error.prompt_id == submit["prompt_id"]
    assert error.node_id == "2"
    assert error.node_type == "TestSyncError"
    assert error.exception_type == "RuntimeError"
    assert "Intentional sync execution error" in error.exception_message
    assert error.executed == ["1"]
    assert error.traceback and all(isinstance(line, str) for line in error.traceback)
    assert "sync_error" in error.traceback[-1]
    assert isinstance(error.current_inputs, dict) and "value" in error.current_inputs
    assert isinstance(error.timestamp, int)
    assert of_type("execution_error", ExecutionSuccess) == []


def test_execution_interrupted_event() -> None:
    submit, _, _ = load("interrupted")
    (event,) = of_type("interrupted", ExecutionInterrupted)
    assert event.prompt_id == submit["prompt_id"]
    assert event.node_id == "2"
    assert event.node_type == "TestSleep"
    assert event.executed == ["1"]
    assert isinstance(event.timestamp, int)


def test_binary_type_4_preview_with_metadata() -> None:
    submit, frames, _ = load("txt2img_preview")
    raw = [f for f in frames if isinstance(f, bytes)]
    assert raw and all(struct.unpack_from(">I", f)[0] == 4 for f in raw)
    previews = of_type("txt2img_preview", PreviewImage)
    assert len(previews) == len(raw) == 2
    for preview in previews:
        assert preview.prompt_id == submit["prompt_id"]
        assert preview.node_id == preview.display_node_id == preview.real_node_id == "5"
        assert preview.parent_node_id is None
        assert preview.mime_type == "image/jpeg"
        assert preview.image.startswith(JPEG_SOI)
    assert previews[0].to_pil().size == (64, 64)


def test_binary_type_1_legacy_preview_has_no_prompt_id() -> None:
    _, frames, _ = load("txt2img_legacy_preview")
    raw = [f for f in frames if isinstance(f, bytes)]
    assert raw and all(struct.unpack_from(">II", f) == (1, 1) for f in raw)
    previews = of_type("txt2img_legacy_preview", PreviewImage)
    assert len(previews) == 2
    for preview in previews:
        assert preview.prompt_id is None
        assert preview.node_id is None
        assert preview.mime_type == "image/jpeg"
        assert preview.image.startswith(JPEG_SOI)
    assert previews[0].to_pil().size == (64, 64)


def test_binary_type_3_progress_text() -> None:
    (text,) = of_type("text_frame", ProgressText)
    assert text.node_id == "2"
    assert text.text == "width: 64, height: 48\n batch size: 2"
    assert text.prompt_id is None


# -- hand-built frames ---------------------------------------------------------------------


def test_status_first_frame_and_broadcast() -> None:
    first = parse_text(
        '{"type":"status","data":{"status":{"exec_info":{"queue_remaining":3}},"sid":"abc"}}'
    )
    assert first == Status(queue_remaining=3, sid="abc")
    later = parse_text('{"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}}}}')
    assert isinstance(later, Status) and later.sid is None and later.queue_remaining == 0
    empty = parse_text('{"type":"status","data":{}}')
    assert isinstance(empty, Status) and empty.queue_remaining is None


def test_feature_flags_keep_every_flag() -> None:
    event = parse_text(
        '{"type":"feature_flags","data":{"supports_preview_metadata":true,'
        '"max_upload_size":1,"extension":{"manager":{"supports_v4":true}}}}'
    )
    assert isinstance(event, FeatureFlags)
    assert event.flags["extension"] == {"manager": {"supports_v4": True}}


@pytest.mark.parametrize(
    ("message", "cls", "fields"),
    [
        (
            {"type": "execution_start", "data": {"prompt_id": "p", "timestamp": 5}},
            ExecutionStart,
            {"prompt_id": "p", "timestamp": 5},
        ),
        (
            {"type": "execution_cached", "data": {"nodes": ["1", "2"], "prompt_id": "p"}},
            ExecutionCached,
            {"nodes": ["1", "2"]},
        ),
        (
            {"type": "executing", "data": {"node": "3", "display_node": "9", "prompt_id": "p"}},
            Executing,
            {"node": "3", "display_node": "9"},
        ),
        ({"type": "executing", "data": {"node": "3"}}, Executing, {"prompt_id": None}),
        (
            {"type": "progress", "data": {"value": 2, "max": 20, "prompt_id": "p", "node": "5"}},
            Progress,
            {"value": 2, "max": 20, "node": "5"},
        ),
        (
            {
                "type": "progress_state",
                "data": {"prompt_id": "p", "nodes": {"5": {"value": 1, "max": 2}}},
            },
            ProgressState,
            {"nodes": {"5": NodeProgress(value=1, max=2)}},
        ),
        (
            {
                "type": "executed",
                "data": {"node": "9", "output": {"text": ["a"]}, "prompt_id": "p"},
            },
            Executed,
            {"node": "9", "output": {"text": ["a"]}},
        ),
        ({"type": "execution_success", "data": {"prompt_id": "p"}}, ExecutionSuccess, {}),
        (
            {
                "type": "execution_error",
                "data": {
                    "prompt_id": "p",
                    "node_id": "2",
                    "node_type": "SaveImage",
                    "exception_type": "Exception",
                    "exception_message": "bad prefix",
                    "traceback": ["x"],
                },
            },
            ExecutionErrorEvent,
            {"node_id": "2", "node_type": "SaveImage", "traceback": ["x"]},
        ),
        (
            # ExecutionBlocker errors carry no timestamp and empty lists.
            {
                "type": "execution_error",
                "data": {
                    "prompt_id": "p",
                    "node_id": "4",
                    "node_type": "X",
                    "exception_type": "ExecutionBlocked",
                    "exception_message": "blocked",
                    "traceback": [],
                    "executed": [],
                    "current_inputs": [],
                    "current_outputs": [],
                },
            },
            ExecutionErrorEvent,
            {"exception_type": "ExecutionBlocked", "timestamp": None},
        ),
        (
            {
                "type": "execution_interrupted",
                "data": {"prompt_id": "p", "node_id": "3", "node_type": "ImageBlur"},
            },
            ExecutionInterrupted,
            {"node_id": "3", "node_type": "ImageBlur", "executed": []},
        ),
        (
            {"type": "logs", "data": {"entries": [{"t": "2025", "m": "hi"}], "size": None}},
            Logs,
            {"entries": [{"t": "2025", "m": "hi"}], "size": None},
        ),
    ],
)
def test_hand_built_json_events(
    message: dict[str, Any], cls: type[EventBase], fields: dict[str, Any]
) -> None:
    for event in (parse_text(json.dumps(message)), parse_event(message)):
        assert type(event) is cls
        assert event.type == message["type"]
        for key, value in fields.items():
            assert getattr(event, key) == value


def test_unknown_json_types_become_unknown_events_with_their_data() -> None:
    event = parse_text('{"type":"assets.seed.started","data":{"roots":["a"],"total":3}}')
    assert isinstance(event, UnknownEvent)
    assert event.type == "assets.seed.started"
    assert event.data == {"roots": ["a"], "total": 3}
    custom = parse_text('{"type":"my_node.progress","data":[1,2]}')
    assert isinstance(custom, UnknownEvent) and custom.data == [1, 2]
    nodata = parse_text('{"type":"ping"}')
    assert isinstance(nodata, UnknownEvent) and nodata.type == "ping" and nodata.data is None


def test_unknown_fields_are_kept() -> None:
    event = parse_text(
        '{"type":"executed","data":{"node":"1","output":{},"prompt_id":"p",'
        '"display_node":"1","asset":{"id":7},"extra_count":2}}'
    )
    assert isinstance(event, Executed)
    assert event.model_extra == {"asset": {"id": 7}, "extra_count": 2}
    assert event.model_dump()["asset"] == {"id": 7}
    meta = {
        "node_id": "5",
        "prompt_id": "p",
        "image_type": "image/png",
        "display_node_id": "5",
        "parent_node_id": "1",
        "real_node_id": "5",
    }
    blob = json.dumps(meta).encode()
    preview = parse_binary(binary(4, struct.pack(">I", len(blob)), blob, PNG_SIG))
    assert isinstance(preview, PreviewImage)
    assert preview.parent_node_id == "1"


def test_hand_built_binary_frames() -> None:
    jpeg = parse_binary(binary(1, struct.pack(">I", 1), JPEG_SOI + b"rest"))
    assert isinstance(jpeg, PreviewImage)
    assert (jpeg.mime_type, jpeg.image, jpeg.prompt_id) == ("image/jpeg", JPEG_SOI + b"rest", None)
    png = parse_binary(binary(1, struct.pack(">I", 2), PNG_SIG))
    assert isinstance(png, PreviewImage) and png.mime_type == "image/png"

    node = b"54:73"
    text = parse_binary(binary(3, struct.pack(">I", len(node)), node, "héllo ✓".encode()))
    assert isinstance(text, ProgressText)
    assert (text.node_id, text.text) == ("54:73", "héllo ✓")
    empty = parse_binary(binary(3, struct.pack(">I", 0)))
    assert isinstance(empty, ProgressText) and (empty.node_id, empty.text) == ("", "")

    meta = json.dumps({"node_id": "5", "prompt_id": "p", "image_type": "image/png"}).encode()
    with_meta = parse_binary(binary(4, struct.pack(">I", len(meta)), meta, PNG_SIG))
    assert isinstance(with_meta, PreviewImage)
    assert (with_meta.prompt_id, with_meta.node_id) == ("p", "5")
    assert (with_meta.mime_type, with_meta.image) == ("image/png", PNG_SIG)


def test_binary_frames_accept_bytearray_and_memoryview() -> None:
    frame = binary(1, struct.pack(">I", 1), JPEG_SOI)
    for view in (bytearray(frame), memoryview(frame)):
        event = parse_binary(view)  # type: ignore[arg-type]
        assert isinstance(event, PreviewImage) and event.image == JPEG_SOI


def test_unknown_binary_types_become_unknown_binary() -> None:
    event = parse_binary(binary(2, b"payload"))
    assert isinstance(event, UnknownBinary)
    assert (event.event_type, event.payload) == (2, b"payload")
    big = parse_binary(binary(0xFFFFFFFF, b""))
    assert isinstance(big, UnknownBinary) and big.event_type == 0xFFFFFFFF


# -- malformed input never raises ---------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "not json",
        "{",
        "[1, 2",
        "null",
        "42",
        '"status"',
        "[]",
        '{"data": {}}',
        '{"type": 5, "data": {}}',
        '{"type": null}',
        '{"type": "executing", "data": "x"}',
        '{"type": "executing", "data": [1]}',
        '{"type": "executed", "data": {"output": {}}}',
        '{"type": "executed", "data": {"node": "1", "output": [1]}}',
        '{"type": "executing", "data": {"node": 5, "prompt_id": {}}}',
        '{"type": "progress", "data": {"value": "lots"}}',
        '{"type": "progress_state", "data": {"nodes": {"1": 5}}}',
        '{"type": "execution_cached", "data": {"nodes": "1"}}',
        '{"type": "execution_start", "data": {"timestamp": "soon"}}',
        '{"type": "status", "data": null}',
        '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": "x"}}}}',
        '{"type": "status", "data": {"sid": 5}}',
        '{"type": "feature_flags", "data": [1]}',
        '{"type": "executing", "data": {"type": "executed"}}',
    ],
)
def test_malformed_text_frames_become_unknown_events(frame: str) -> None:
    event = parse_text(frame)
    assert isinstance(event, UnknownEvent)


def test_invalid_json_keeps_the_raw_frame() -> None:
    event = parse_text("{nope")
    assert isinstance(event, UnknownEvent)
    assert (event.type, event.data) == ("invalid", "{nope")


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00",
        b"\x00\x00\x01",
        binary(1),
        binary(1, b"\x00\x00"),
        binary(3),
        binary(3, b"\x00\x00"),
        binary(3, struct.pack(">I", 2), b"\xff\xfe"),
        binary(4),
        binary(4, struct.pack(">I", 100), b"{}"),
        binary(4, struct.pack(">I", 3), b"{{{"),
        binary(4, struct.pack(">I", 2), b"[]"),
        binary(4, struct.pack(">I", 2), b"\xff\xfe"),
        binary(4, struct.pack(">I", 15), b'{"node_id": 5}'),
    ],
)
def test_short_or_malformed_binary_frames_never_raise(frame: bytes) -> None:
    event = parse_binary(frame)
    assert isinstance(event, (UnknownBinary, PreviewImage, ProgressText))
    if len(frame) < 4:
        assert isinstance(event, UnknownBinary) and event.event_type == -1
        assert event.payload == frame


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"status","data":{"status":5}}',
        '{"type":"status","data":{"status":{"exec_info":[1]}}}',
        '{"type":"status","data":{"status":[],"sid":"s"}}',
    ],
)
def test_status_with_non_object_parts(frame: str) -> None:
    event = parse_text(frame)
    assert isinstance(event, (Status, UnknownEvent))
    if isinstance(event, Status):
        assert event.queue_remaining is None


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_deeply_nested_json_never_raises(kind: str) -> None:
    deep = "[" * 100_000
    if kind == "text":
        assert isinstance(parse_text(deep), UnknownEvent)
    else:
        blob = deep.encode()
        assert isinstance(
            parse_binary(binary(4, struct.pack(">I", len(blob)), blob)), UnknownBinary
        )


# -- property tests -------------------------------------------------------------------------

KNOWN_TYPES = [*JSON_MODELS, "unknown", "assets.seed.error"]
FIELD_NAMES = [
    "prompt_id",
    "node",
    "node_id",
    "node_type",
    "display_node",
    "nodes",
    "output",
    "value",
    "max",
    "timestamp",
    "status",
    "exec_info",
    "queue_remaining",
    "sid",
    "executed",
    "traceback",
    "exception_message",
    "exception_type",
    "entries",
    "size",
    "type",
    "state",
]
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)
messages = (
    st.fixed_dictionaries({"type": st.sampled_from(KNOWN_TYPES) | json_values, "data": json_values})
    | json_values
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(messages)
def test_parse_text_never_raises_on_any_json(message: Any) -> None:
    event = parse_text(json.dumps(message))
    assert isinstance(event, EventBase)
    if (
        isinstance(message, dict)
        and message.get("type") == "status"
        and isinstance(message.get("data"), dict)
    ):
        assert isinstance(event, (Status, UnknownEvent))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_text_never_raises_on_any_text(frame: str) -> None:
    assert isinstance(parse_text(frame), EventBase)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_parse_binary_never_raises_on_any_bytes(frame: bytes) -> None:
    assert isinstance(parse_binary(frame), (PreviewImage, ProgressText, UnknownBinary))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([1, 3, 4, 5]),
    st.integers(min_value=0, max_value=80),
    st.binary(max_size=40) | json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=16),
)
def test_parse_binary_never_raises_on_structured_frames(
    etype: int, length: int, head: bytes, tail: bytes
) -> None:
    event = parse_binary(binary(etype, struct.pack(">I", length), head, tail))
    assert isinstance(event, (PreviewImage, ProgressText, UnknownBinary))
    if etype == 5:
        assert isinstance(event, UnknownBinary) and event.event_type == 5
