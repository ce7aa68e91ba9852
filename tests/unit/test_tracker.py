"""The completion rule: recorded ComfyUI traffic replayed through ``Router`` + ``JobTracker``.

Every fixture in ``tests/fixtures/events`` (recorded by ``scripts/record_event_fixtures.py``) is
fed frame by frame, exactly as the client's stream does, then reconciled with the recorded
``/history`` entry.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfykit._exceptions import ExecutionError, JobError, JobInterrupted, JobLost
from comfykit._protocol.events import (
    Event,
    Executing,
    PreviewImage,
    Progress,
    ProgressText,
    UnknownEvent,
    parse_binary,
    parse_event,
    parse_text,
)
from comfykit._protocol.prompt import node_errors_from_body
from comfykit._protocol.tracker import JobStatus, JobTracker, Router, merge_outputs
from comfykit._types import HistoryEntry
from tests.recordings import FIXTURES
from tests.recordings import load as load_recording


@dataclass
class Recording:
    name: str
    prompt_id: str
    submit: dict[str, Any]
    frames: list[str | bytes]
    history: HistoryEntry
    raw_history: dict[str, Any]


def load(name: str) -> Recording:
    submit, frames, raw_history = load_recording(name)
    return Recording(
        name,
        submit["prompt_id"],
        submit,
        frames,
        HistoryEntry.model_validate(raw_history),
        raw_history,
    )


def parse(frame: str | bytes) -> Event:
    return parse_binary(frame) if isinstance(frame, bytes) else parse_text(frame)


@dataclass
class Replay:
    router: Router
    tracker: JobTracker
    recording: Recording
    needs_history: list[bool]
    fed_to: list[JobTracker | None]


def replay(name: str, *, apply_history: bool = True) -> Replay:
    """Register the prompt, feed every frame, then (by default) apply the history entry."""
    rec = load(name)
    router = Router()
    tracker = router.register(rec.prompt_id)
    needs: list[bool] = []
    fed_to: list[JobTracker | None] = []
    for frame in rec.frames:
        fed_to.append(router.feed(parse(frame)))
        needs.append(tracker.needs_history)
    if apply_history:
        tracker.apply_history(rec.history)
    return Replay(router, tracker, rec, needs, fed_to)


@dataclass(frozen=True)
class Expect:
    status: JobStatus
    outputs: tuple[str, ...]
    cached: tuple[str, ...] = ()
    previews: int = 0
    texts: int = 0


EXPECTED: dict[str, Expect] = {
    "invert": Expect(JobStatus.SUCCEEDED, ("3", "4")),
    "cached": Expect(JobStatus.SUCCEEDED, ("3", "4"), cached=("1", "2", "3", "4")),
    "progress": Expect(JobStatus.SUCCEEDED, ("3",)),
    "text_frame": Expect(JobStatus.SUCCEEDED, ("3",), texts=1),
    "execution_error": Expect(JobStatus.FAILED, ()),
    "interrupted": Expect(JobStatus.INTERRUPTED, ()),
    "txt2img_preview": Expect(JobStatus.SUCCEEDED, ("7",), previews=2),
    "txt2img_legacy_preview": Expect(
        JobStatus.SUCCEEDED, ("7",), cached=("1", "2", "3", "4"), previews=2
    ),
    "partial_node_errors": Expect(JobStatus.SUCCEEDED, ("2",)),
}
SCENARIOS = sorted(EXPECTED)


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.stem for p in FIXTURES.glob("*.jsonl")) == SCENARIOS


@pytest.mark.parametrize("name", SCENARIOS)
def test_replay_reaches_the_expected_end_state(name: str) -> None:
    expect = EXPECTED[name]
    r = replay(name)
    t = r.tracker
    assert t.status is expect.status
    assert t.done
    assert not t.needs_history
    assert t.finished_executing
    assert t.history is r.recording.history
    assert sorted(t.outputs) == sorted(expect.outputs)
    assert t.outputs == r.recording.raw_history["outputs"]
    assert sorted(t.cached_nodes) == sorted(expect.cached)
    assert t.current_node is None
    assert r.router.running is None
    assert r.router.sid == r.recording.submit["client_id"]
    assert r.router.queue_remaining == 0
    previews = [e for e in t.events if isinstance(e, PreviewImage)]
    texts = [e for e in t.events if isinstance(e, ProgressText)]
    assert len(previews) == expect.previews
    assert len(texts) == expect.texts
    assert t.started_at is not None and t.ended_at is not None
    assert t.ended_at >= t.started_at


@pytest.mark.parametrize("name", SCENARIOS)
def test_outputs_from_events_match_history(name: str) -> None:
    """Before reconciliation the ``executed`` events alone already give the history's outputs."""
    r = replay(name, apply_history=False)
    assert r.tracker.outputs == r.recording.raw_history["outputs"]
    assert r.tracker.status is EXPECTED[name].status
    assert not r.tracker.done


@pytest.mark.parametrize("name", SCENARIOS)
def test_needs_history_turns_true_exactly_after_executing_null(name: str) -> None:
    r = replay(name, apply_history=False)
    events = [parse(f) for f in r.recording.frames]
    final = [
        i
        for i, e in enumerate(events)
        if isinstance(e, Executing) and e.node is None and e.prompt_id == r.recording.prompt_id
    ]
    assert final == [len(events) - 1]
    assert r.needs_history == [False] * (len(events) - 1) + [True]
    # The terminal event came first and already decided the status.
    assert r.tracker.terminal is not None
    assert r.tracker.status.finished
    r.tracker.apply_history(r.recording.history)
    assert not r.tracker.needs_history and r.tracker.done


@pytest.mark.parametrize("name", SCENARIOS)
def test_only_the_prompts_own_events_reach_its_tracker(name: str) -> None:
    r = replay(name)
    assert all(e.prompt_id == r.recording.prompt_id for e in r.tracker.events)
    for frame, target in zip(r.recording.frames, r.fed_to, strict=True):
        event = parse(frame)
        if event.type in ("status", "feature_flags"):
            assert target is None
        else:
            assert target is r.tracker, event


def test_type_4_previews_carry_their_prompt_id() -> None:
    r = replay("txt2img_preview")
    previews = [e for e in r.tracker.events if isinstance(e, PreviewImage)]
    assert [p.node_id for p in previews] == ["5", "5"]
    assert all(p.prompt_id == r.recording.prompt_id for p in previews)


@pytest.mark.parametrize(("name", "kind"), [("txt2img_legacy_preview", 1), ("text_frame", 3)])
def test_frames_without_prompt_id_go_to_the_running_prompt(name: str, kind: int) -> None:
    rec = load(name)
    raw = [f for f in rec.frames if isinstance(f, bytes)]
    assert raw and all(struct.unpack_from(">I", f)[0] == kind for f in raw)
    assert all(parse_binary(f).prompt_id is None for f in raw)
    r = replay(name)
    routed = [e for e in r.tracker.events if isinstance(e, (PreviewImage, ProgressText))]
    assert len(routed) == len(raw)
    assert all(e.prompt_id == rec.prompt_id for e in routed)
    if kind == 3:
        (text,) = routed
        assert isinstance(text, ProgressText)
        assert (text.node_id, text.text) == ("2", "width: 64, height: 48\n batch size: 2")


def test_legacy_frames_follow_the_running_prompt_across_prompts() -> None:
    """Two prompts on one socket: each legacy preview goes to the prompt running at that time."""
    first, second = load("invert"), load("txt2img_legacy_preview")
    router = Router()
    t1, t2 = router.register(first.prompt_id), router.register(second.prompt_id)
    for frame in first.frames + second.frames:
        router.feed(parse(frame))
    assert not [e for e in t1.events if isinstance(e, PreviewImage)]
    assert len([e for e in t2.events if isinstance(e, PreviewImage)]) == 2
    assert t1.needs_history and t2.needs_history


def test_legacy_frames_while_idle_are_dropped() -> None:
    rec = load("txt2img_legacy_preview")
    preview = next(f for f in rec.frames if isinstance(f, bytes))
    router = Router()
    tracker = router.register(rec.prompt_id)
    assert router.feed(parse_binary(preview)) is None  # nothing running yet
    for frame in rec.frames:
        router.feed(parse(frame))
    assert router.running is None
    assert router.feed(parse_binary(preview)) is None  # finished: not routed any more
    assert len([e for e in tracker.events if isinstance(e, PreviewImage)]) == 2


def test_events_for_unregistered_prompts_are_ignored() -> None:
    rec = load("invert")
    router = Router()
    other = router.register("someone-else")
    for frame in rec.frames:
        assert router.feed(parse(frame)) is None
    assert list(router.trackers) == ["someone-else"]
    assert other.events == [] and other.status is JobStatus.QUEUED
    assert not other.needs_history
    # Connection-level state is still tracked.
    assert router.sid == rec.submit["client_id"]
    assert router.server_flags["supports_preview_metadata"] is True


def test_unregister_stops_routing() -> None:
    rec = load("progress")
    router = Router()
    tracker = router.register(rec.prompt_id)
    half = len(rec.frames) // 2
    for frame in rec.frames[:half]:
        router.feed(parse(frame))
    seen = len(tracker.events)
    router.unregister(rec.prompt_id)
    for frame in rec.frames[half:]:
        assert router.feed(parse(frame)) is None
    assert len(tracker.events) == seen


def test_register_is_idempotent() -> None:
    router = Router()
    assert router.register("p") is router.register("p")


def test_register_again_after_the_end_starts_afresh() -> None:
    # A pool resubmits a lost job under its own prompt id, maybe to the same client: the new
    # run gets a fresh tracker, the old handle keeps what it saw.
    router = Router()
    old = router.register("p")
    old.fail(JobLost("gone", prompt_id="p"))
    new = router.register("p")
    assert new is not old and not new.done and old.done
    assert router.trackers["p"] is new


def test_reconnect_replay_executing_without_prompt_id_is_ignored() -> None:
    router = Router()
    tracker = router.register("p")
    assert router.feed(parse_text('{"type":"executing","data":{"node":"3"}}')) is None
    assert tracker.events == [] and tracker.current_node is None


def test_raise_for_status_execution_error() -> None:
    r = replay("execution_error")
    with pytest.raises(ExecutionError) as info:
        r.tracker.raise_for_status()
    err = info.value
    assert err.prompt_id == r.recording.prompt_id
    assert (err.node_id, err.node_type) == ("2", "TestSyncError")
    assert err.exception_type == "RuntimeError"
    assert "Intentional sync execution error" in err.exception_message
    assert err.executed == ["1"]
    assert "sync_error" in err.traceback_lines[-1]
    assert err.traceback.endswith(err.traceback_lines[-1])
    assert str(err).startswith("node 2 (TestSyncError) failed with RuntimeError: Intentional")


def test_raise_for_status_interrupted() -> None:
    r = replay("interrupted")
    with pytest.raises(JobInterrupted) as info:
        r.tracker.raise_for_status()
    err = info.value
    assert (err.node_id, err.node_type) == ("2", "TestSleep")
    assert err.prompt_id == r.recording.prompt_id
    assert "at node 2 (TestSleep)" in str(err)
    assert r.tracker.last_progress is not None and r.tracker.last_progress.node == "2"


@pytest.mark.parametrize(
    "name", [n for n in SCENARIOS if EXPECTED[n].status is JobStatus.SUCCEEDED]
)
def test_raise_for_status_success_does_not_raise(name: str) -> None:
    replay(name).tracker.raise_for_status()


def test_progress_events_update_last_progress() -> None:
    r = replay("progress")
    progress = [e for e in r.tracker.events if isinstance(e, Progress)]
    assert progress and r.tracker.last_progress is progress[-1]
    assert r.tracker.last_progress.node == "2"


def test_partial_node_errors_are_reported_while_the_valid_branch_runs() -> None:
    r = replay("partial_node_errors")
    submit = r.recording.submit
    assert submit["status_code"] == 200
    (problem,) = node_errors_from_body(submit["response"]["node_errors"], submit["prompt"])
    assert (problem.node_id, problem.class_type) == ("3", "SaveImage")
    assert (problem.type, problem.input_name) == ("required_input_missing", "images")
    assert str(problem) == "node 3 (SaveImage) input 'images': required input is missing"
    assert r.tracker.status is JobStatus.SUCCEEDED
    assert list(r.tracker.outputs) == ["2"]
    assert r.recording.history.prompt[4] == ["2"]  # the server dropped output node 3


# -- completion from history alone (reconnect catch-up, polling) --------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_completion_from_history_alone(name: str) -> None:
    rec = load(name)
    tracker = JobTracker(rec.prompt_id)
    assert (tracker.done, tracker.needs_history) == (False, False)
    tracker.apply_history(rec.history)
    assert (tracker.done, tracker.needs_history) == (True, False)
    assert tracker.status is EXPECTED[name].status
    assert tracker.outputs == rec.raw_history["outputs"]
    if tracker.status is JobStatus.FAILED:
        with pytest.raises(ExecutionError) as failed:
            tracker.raise_for_status()
        assert (failed.value.node_id, failed.value.node_type) == ("2", "TestSyncError")
    elif tracker.status is JobStatus.INTERRUPTED:
        with pytest.raises(JobInterrupted) as stopped:
            tracker.raise_for_status()
        assert (stopped.value.node_id, stopped.value.node_type) == ("2", "TestSleep")
    else:
        tracker.raise_for_status()


def test_history_without_messages_uses_status_str() -> None:
    ok = JobTracker("p")
    ok.apply_history(
        HistoryEntry.model_validate({"status": {"status_str": "success", "completed": True}})
    )
    assert ok.status is JobStatus.SUCCEEDED
    bad = JobTracker("q")
    bad.apply_history(
        HistoryEntry.model_validate({"status": {"status_str": "error", "completed": False}})
    )
    assert bad.status is JobStatus.FAILED
    with pytest.raises(JobError):
        bad.raise_for_status()


def test_history_is_authoritative_for_outputs() -> None:
    r = replay("invert", apply_history=False)
    entry = HistoryEntry.model_validate({**r.recording.raw_history, "outputs": {"9": {"x": [1]}}})
    r.tracker.apply_history(entry)
    assert r.tracker.outputs == {"9": {"x": [1]}}


def test_completion_from_history_alone_keeps_cached_nodes() -> None:
    rec = load("cached")
    tracker = JobTracker(rec.prompt_id)
    tracker.apply_history(rec.history)
    assert sorted(tracker.cached_nodes) == ["1", "2", "3", "4"]


def test_history_error_message_that_does_not_validate_still_fails_the_job() -> None:
    rec = load("execution_error")
    raw = json.loads(json.dumps(rec.raw_history))
    raw["status"]["messages"][-1][1]["timestamp"] = 1.5
    tracker = JobTracker(rec.prompt_id)
    tracker.apply_history(HistoryEntry.model_validate(raw))
    assert tracker.status is JobStatus.FAILED
    with pytest.raises(JobError):
        tracker.raise_for_status()


def test_fail_marks_a_lost_job() -> None:
    tracker = JobTracker("p")
    tracker.fail(JobLost("gone", prompt_id="p"))
    assert tracker.done and tracker.status is JobStatus.LOST and not tracker.needs_history
    with pytest.raises(JobLost):
        tracker.raise_for_status()


def test_fail_after_history_is_ignored() -> None:
    r = replay("invert")
    r.tracker.fail(JobLost("late", prompt_id=r.recording.prompt_id))
    assert r.tracker.status is JobStatus.SUCCEEDED and r.tracker.error is None


@pytest.mark.parametrize("end", ["missing", "connection lost"])
def test_a_job_whose_end_was_seen_survives_the_server(end: str) -> None:
    """Its completion and outputs are known from the events: neither a server restarted with an
    empty history nor one that went away turns it into a lost job."""
    r = replay("invert", apply_history=False)
    tracker = r.tracker
    assert tracker.terminal is not None and tracker.history is None  # not done yet
    outputs = {k: dict(v) for k, v in tracker.outputs.items()}
    if end == "missing":
        tracker.apply_missing()
    else:
        tracker.fail(JobLost("connection lost", prompt_id=r.recording.prompt_id))
    assert tracker.done and tracker.status is JobStatus.SUCCEEDED and tracker.error is None
    assert tracker.outputs == outputs and outputs
    tracker.raise_for_status()


def test_merge_outputs_concatenates_lists_like_the_server() -> None:
    outputs: dict[str, dict[str, Any]] = {}
    merge_outputs(outputs, "1", {"images": [{"filename": "a"}], "animated": [False]})
    merge_outputs(outputs, "1", {"images": [{"filename": "b"}], "text": "x"})
    assert outputs == {
        "1": {"images": [{"filename": "a"}, {"filename": "b"}], "animated": [False], "text": "x"}
    }


def test_job_status_finished() -> None:
    assert not JobStatus.QUEUED.finished and not JobStatus.RUNNING.finished
    assert all(
        s.finished
        for s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.INTERRUPTED, JobStatus.LOST)
    )


# -- property tests -------------------------------------------------------------------------

PROMPT_IDS = ["a", "b", None]
TYPES = [
    "status",
    "feature_flags",
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "progress_state",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
    "logs",
    "custom",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6)
)
values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=12,
)
datas = st.fixed_dictionaries(
    {},
    optional={
        "prompt_id": st.sampled_from(PROMPT_IDS) | values,
        "node": st.sampled_from(["1", "2", None]) | values,
        "node_id": st.sampled_from(["1", "2"]) | values,
        "nodes": st.lists(st.sampled_from(["1", "2"])) | values,
        "output": st.dictionaries(st.sampled_from(["images", "text"]), values) | values,
        "timestamp": st.integers(0, 2**41) | values,
        "value": values,
        "max": values,
        "status": values,
        "sid": values,
        "executed": values,
        "traceback": values,
    },
)
json_frames = st.fixed_dictionaries(
    {"type": st.sampled_from(TYPES) | values, "data": datas | values}
).map(json.dumps) | st.text(max_size=20)


def _meta_frame(meta: Any, image: bytes) -> bytes:
    blob = json.dumps(meta).encode()
    return struct.pack(">II", 4, len(blob)) + blob + image


binary_frames = (
    st.binary(max_size=24)
    | st.builds(lambda t, b: struct.pack(">I", t) + b, st.sampled_from([1, 3, 4, 9]), st.binary())
    | st.builds(
        _meta_frame,
        st.fixed_dictionaries({"prompt_id": st.sampled_from(PROMPT_IDS) | values}) | values,
        st.binary(max_size=8),
    )
)


def _general_parse(frame: str) -> Event:
    try:
        message = json.loads(frame)
    except ValueError:
        return UnknownEvent(type="invalid", data=frame)
    return parse_event(message)


@settings(max_examples=500, deadline=None)
@given(json_frames)
def test_one_pass_frame_parsing_agrees_with_the_general_parser(frame: str) -> None:
    # parse_text validates known frames straight from the JSON text; whatever it accepts must
    # come out exactly as the general parser (json.loads + parse_event) makes it.
    event = parse_text(frame)
    assert event == _general_parse(frame)
    assert type(event) is type(_general_parse(frame))


@pytest.mark.parametrize("name", sorted(p.stem for p in FIXTURES.glob("*.jsonl")))
def test_one_pass_parsing_of_every_recorded_frame(name: str) -> None:
    for frame in load(name).frames:
        if isinstance(frame, str):
            assert parse_text(frame) == _general_parse(frame)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_frames | binary_frames, max_size=25))
def test_router_feed_never_raises(frames: list[str | bytes]) -> None:
    router = Router()
    tracker_a = router.register("a")
    router.register("b")
    for frame in frames:
        target = router.feed(parse(frame))
        assert target is None or target is router.trackers.get(target.prompt_id)
    assert all(e.prompt_id == "a" for e in tracker_a.events)
    _ = tracker_a.needs_history, tracker_a.done


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["success", "error", "weird"]),
    st.lists(
        st.tuples(
            st.sampled_from(
                ["execution_start", "execution_success", "execution_error", "execution_interrupted"]
            ),
            datas,
        ),
        max_size=4,
    ),
)
def test_apply_history_never_raises(status_str: str, messages: list[tuple[str, Any]]) -> None:
    entry = HistoryEntry.model_validate(
        {"status": {"status_str": status_str, "completed": True, "messages": messages}}
    )
    tracker = JobTracker("a")
    tracker.apply_history(entry)
    assert tracker.done and not tracker.needs_history
    try:
        tracker.raise_for_status()
    except JobError:
        pass
