"""Fuzzing every shared file type (Hypothesis): a valid file, mutated as a hostile or careless user would (values of
the wrong type, NaN and infinities, huge and negative sizes, deleted and unknown keys, truncation, flipped and
inserted bytes, deep nesting), goes through the project's real reader. Each run either reads it or refuses it with the
reader's own error in one short line; never another exception, never a write, never more than a bounded allocation.

The examples are derandomised (the same ones every CI run); DREAMWALK_FUZZ_EXAMPLES=N runs N per file type and
DREAMWALK_FUZZ_RANDOM=1 draws new ones (with pytest's --hypothesis-seed to repeat a run).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = int(os.environ.get("DREAMWALK_FUZZ_EXAMPLES", "60"))
PEAK_BYTES = 256 << 20  # what one read may allocate: numpy and Python objects (traced), and the process's peak RSS growth
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("DREAMWALK_FUZZ_RANDOM"),
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

# -- mutations ---------------------------------------------------------------------------------------------------

HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 10**9, 2**63, 1e308, 1e-300, "no", "yes", "1e5", "", "../x", "\x00", "é" * 3]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(min_value=-5, max_value=10**6), max_size=4),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.recursive(st.integers(), lambda inner: st.lists(inner, min_size=1, max_size=2), max_leaves=80),
)


def _paths(obj, prefix=()):
    """Every place (a tuple of keys/indices) in a parsed YAML/JSON document."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _mutate_tree(data, doc):
    """One structural change: a value replaced by a hostile one, a key deleted, or an unknown key added."""
    doc = json.loads(json.dumps(doc))
    places = list(_paths(doc))
    where = data.draw(st.sampled_from(places), label="where")
    op = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]), label="op")
    if not where:
        return data.draw(HOSTILE, label="whole") if op == "replace" else doc
    parent = doc
    for k in where[:-1]:
        parent = parent[k]
    key = where[-1]
    if op == "replace":
        parent[key] = data.draw(HOSTILE, label="value")
    elif op == "delete":
        del parent[key]
    elif isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=6), label="new key")] = data.draw(HOSTILE, label="new value")
    return doc


def _mutate_bytes(data, raw: bytes, focus: int | None = None) -> bytes:
    """1-3 byte-level changes: truncation, flipped bytes, inserted bytes, a deleted range (within the first `focus`
    bytes when given: a header)."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        hi = max(1, min(len(out), focus or len(out)))
        pos = data.draw(st.integers(0, hi - 1), label="pos")
        op = data.draw(st.sampled_from(["truncate", "flip", "insert", "delete"]), label="byte op")
        if op == "truncate":
            del out[pos:]
        elif op == "flip" and pos < len(out):
            out[pos] ^= data.draw(st.integers(1, 255), label="xor")
        elif op == "insert":
            out[pos:pos] = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
        elif op == "delete":
            del out[pos:pos + data.draw(st.integers(1, 64), label="len")]
    return bytes(out)


def _mutated_yaml(data, text: str) -> str:
    if data.draw(st.booleans(), label="structural"):
        return yaml.safe_dump(_mutate_tree(data, yaml.safe_load(text)), sort_keys=False)
    return _mutate_bytes(data, text.encode()).decode("utf-8", errors="surrogateescape").encode(
        "utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _write_yaml_or_bytes(data, path: Path, original: str) -> None:
    if data.draw(st.booleans(), label="as bytes"):
        path.write_bytes(_mutate_bytes(data, original.encode()))
    else:
        path.write_text(_mutated_yaml(data, original))


# -- the check ---------------------------------------------------------------------------------------------------


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def refused_in_one_line(read, errors: tuple[type[BaseException], ...], folder: Path):
    """Run `read()`: it returns, or raises one of `errors` with a one-line message of at most 1,000 characters. Nothing in
    `folder` changes, and the read allocates at most PEAK_BYTES. Returns the message ('' when it read)."""
    before = _listing(folder)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10  # torch's own allocator is not traced
    tracemalloc.start()
    try:
        read()
        message = ""
    except errors as e:
        message = str(e)
        assert "\n" not in message and 0 < len(message) <= 1000, f"{type(e).__name__}: {message[:2000]!r}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - rss
    assert max(peak, grown) <= PEAK_BYTES, f"the read allocated {max(peak, grown) / 2**20:.0f} MiB"
    assert _listing(folder) == before, "a read changed files"
    return message


# -- fixtures: one valid file of each type ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def recording(plane_recording):
    return plane_recording


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from tests.randmodel import random_model_dir
    from worldmodel.checkpoint import load_model

    path = random_model_dir(tmp_path_factory.mktemp("fuzzmodel") / "model")
    load_model(path)  # one-time costs (imports, caches) before any read is measured
    return path


def _fresh(src: Path, tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def _read_recording(path: Path) -> None:
    from engine.recording import Recording

    rec = Recording(path)
    for i in range(len(rec)):
        rec[i]


# -- the file types ----------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_model_yaml(data, model, tmp_path):
    from worldmodel.checkpoint import CheckpointError, read_model_config

    d = _fresh(model, tmp_path, "m")
    _write_yaml_or_bytes(data, d / "model.yaml", (model / "model.yaml").read_text())
    refused_in_one_line(lambda: read_model_config(d), (CheckpointError,), d)


@FUZZ
@given(data=st.data())
def test_model_weights_header(data, model, tmp_path):
    from worldmodel.checkpoint import CheckpointError, load_model

    d = _fresh(model, tmp_path, "w")
    raw = (model / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(_mutate_bytes(data, raw, focus=int.from_bytes(raw[:8], "little") + 8))
    refused_in_one_line(lambda: load_model(d), (CheckpointError,), d)


@FUZZ
@given(data=st.data())
def test_recording_meta_yaml(data, recording, tmp_path):
    from engine.recording import RecordingError

    d = _fresh(recording, tmp_path, "r")
    _write_yaml_or_bytes(data, d / "meta.yaml", (recording / "meta.yaml").read_text())
    refused_in_one_line(lambda: _read_recording(d), (RecordingError,), d)


@FUZZ
@given(data=st.data())
def test_recording_ticks_jsonl(data, recording, tmp_path):
    from engine.recording import RecordingError

    d = _fresh(recording, tmp_path, "t")
    lines = (recording / "ticks.jsonl").read_text().splitlines()
    if data.draw(st.booleans(), label="as bytes"):
        (d / "ticks.jsonl").write_bytes(_mutate_bytes(data, (recording / "ticks.jsonl").read_bytes()))
    else:
        i = data.draw(st.integers(0, len(lines) - 1), label="row")
        lines[i] = json.dumps(_mutate_tree(data, json.loads(lines[i])))
        (d / "ticks.jsonl").write_text("".join(line + "\n" for line in lines))
    refused_in_one_line(lambda: _read_recording(d), (RecordingError,), d)


@FUZZ
@given(data=st.data())
def test_recording_frame_chunk(data, recording, tmp_path):
    from engine.recording import RecordingError

    d = _fresh(recording, tmp_path, "c")
    chunk = sorted((d / "frames").glob("*.npz"))[0]
    raw = chunk.read_bytes()
    chunk.write_bytes(_mutate_bytes(data, raw, focus=data.draw(st.sampled_from([256, len(raw)]), label="focus")))
    refused_in_one_line(lambda: _read_recording(d), (RecordingError,), d)


def _yaml_reader(kind: str):
    """(the shipped file a YAML type is fuzzed from, its reader, the reader's error)."""
    from engine.arena.config import ArenaConfigError, load_preset
    from engine.input import Keymap, KeymapError
    from engine.script import ScriptError, load_script
    from worldmodel.config import ConfigError
    from worldmodel.training.common import load_presets

    return {"keymap": (ROOT / "assets" / "keymap.yaml", Keymap.load, KeymapError),
            "action script": (ROOT / "assets" / "scripts" / "tour.yaml", load_script, ScriptError),
            "training config": (ROOT / "assets" / "configs" / "small.yaml", load_presets, ConfigError),
            "arena preset": (ROOT / "assets" / "arena" / "small.yaml", lambda p: load_preset(str(p)),
                             ArenaConfigError)}[kind]


@pytest.mark.parametrize("kind", ["keymap", "action script", "training config", "arena preset"])
@FUZZ
@given(data=st.data())
def test_yaml_file(kind, data, tmp_path):
    original, read, error = _yaml_reader(kind)
    path = tmp_path / "file.yaml"
    _write_yaml_or_bytes(data, path, original.read_text())
    refused_in_one_line(lambda: read(path), (error,), tmp_path)


@FUZZ
@given(data=st.data())
def test_ply(data, tmp_path):
    from splat.gaussians import Gaussians
    from splat.ply import PlyError, read_ply, write_ply

    g = Gaussians.empty(8)
    rng = np.random.default_rng(0)
    g.append(means=rng.normal(size=(8, 3)).astype(np.float32), quats=np.tile([1, 0, 0, 0], (8, 1)).astype(np.float32),
             scales=np.full((8, 3), 0.1, np.float32), opacities=np.full(8, 0.5, np.float32),
             colors=rng.random((8, 3)).astype(np.float32), tick=0)
    path = tmp_path / "scene.ply"
    write_ply(path, g)
    raw = path.read_bytes()
    path.write_bytes(_mutate_bytes(data, raw, focus=data.draw(st.sampled_from([raw.index(b"end_header") + 11,
                                                                               len(raw)]), label="focus")))
    refused_in_one_line(lambda: read_ply(path), (PlyError,), tmp_path)


# -- the checker checks ------------------------------------------------------------------------------------------


def test_the_checker_catches_a_traceback_a_long_message_and_a_write(tmp_path):
    """refused_in_one_line fails for each kind of defect it exists to find."""
    with pytest.raises(KeyError):  # another exception passes through: the test fails
        refused_in_one_line(lambda: {}["x"], (ValueError,), tmp_path)
    with pytest.raises(AssertionError, match="ValueError"):
        refused_in_one_line(lambda: (_ for _ in ()).throw(ValueError("two\nlines")), (ValueError,), tmp_path)
    with pytest.raises(AssertionError, match="changed files"):
        refused_in_one_line(lambda: (tmp_path / "new").write_text("x"), (ValueError,), tmp_path)
    with pytest.raises(AssertionError, match="allocated"):
        refused_in_one_line(lambda: np.ones(PEAK_BYTES // 8 + 1024), (ValueError,), tmp_path)
    assert refused_in_one_line(lambda: (_ for _ in ()).throw(ValueError("one line")), (ValueError,), tmp_path) == "one line"
