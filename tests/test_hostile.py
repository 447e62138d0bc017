"""Hostile recordings: each damage gives one clear line (exit 2) from replay --verify and from training's reader,
never a traceback, before any large read."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    from engine.rollout import rollout

    out = tmp_path_factory.mktemp("hostile") / "plane"
    rollout("plane", out, episodes=1, ticks=12, policy="random", split=None, config={"width": 16, "height": 16},
            progress=False)
    return next(p.parent for p in out.rglob("meta.yaml"))


def _rows(rec):
    return [json.loads(line) for line in (rec / "ticks.jsonl").read_text().splitlines()]


def _write_rows(rec, rows):
    (rec / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _chunk(rec):
    return sorted((rec / "frames").glob("*.npz"))[0]


def _rewrite_chunk(rec, edit):
    path = _chunk(rec)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _row(rows, i, **kw):
    rows[i].update(kw)
    return rows


DAMAGE = {
    "a row without cam_to_world": (lambda rec: _write_rows(rec, [{k: v for k, v in r.items() if k != "cam_to_world"}
                                                                  for r in _rows(rec)]), "needs 'action', 'cam_to_world'"),
    "a string where a tick belongs": (lambda rec: _write_rows(rec, _row(_rows(rec), 3, tick="three")),
                                      "'tick' must be an integer"),
    "NaN in a pose": (lambda rec: _write_rows(rec, _row(_rows(rec), 4, cam_to_world=[[float("nan")] * 4] * 4)),
                      "'cam_to_world' holds NaN"),
    "a 3x3 pose": (lambda rec: _write_rows(rec, _row(_rows(rec), 2, cam_to_world=[[1, 0, 0]] * 3)),
                   "'cam_to_world' must be 4x4"),
    "non-UTF-8 bytes": (lambda rec: (rec / "ticks.jsonl").write_bytes(b'{"tick": "\xff\xfe"}\n'), "not valid UTF-8 JSON"),
    "a bad action": (lambda rec: _write_rows(rec, _row(_rows(rec), 5, action={"keys": ["fly"], "yaw": 0, "pitch": 0})),
                     "'action'"),
    "more rows than frames": (lambda rec: _rewrite_chunk(rec, lambda a: a.update({k: v[:5] for k, v in a.items()})),
                              "frames for"),
    "a chunk without rgb": (lambda rec: _rewrite_chunk(rec, lambda a: a.pop("rgb")), "no 'rgb'"),
    "float frames": (lambda rec: _rewrite_chunk(rec, lambda a: a.update(rgb=a["rgb"].astype(np.float32))),
                     "'rgb' is float32"),
    "a chunk at another size": (lambda rec: _rewrite_chunk(rec, lambda a: a.update(rgb=np.zeros((len(a["rgb"]), 8, 8, 3),
                                                                                                np.uint8))),
                                "'rgb' has shape"),
    "a chunk that is a folder": (lambda rec: (_chunk(rec).unlink(), _chunk_dir(rec)), "not a regular file"),
}


def _chunk_dir(rec):
    (rec / "frames" / "000000.npz").mkdir()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_recording_is_one_line_for_replay_and_training(good, tmp_path, capsys, damage):
    from engine.replay import main as replay
    from worldmodel.data import DataError, FrameStore

    rec = tmp_path / "rec"
    shutil.copytree(good, rec)
    make, says = DAMAGE[damage]
    make(rec)
    assert replay([str(rec), "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    with pytest.raises(DataError, match="cannot read training recording"):
        FrameStore.load([str(rec)], (16, 16))


def test_the_undamaged_recording_verifies_and_loads(good, capsys):
    from engine.replay import main as replay
    from worldmodel.data import FrameStore

    assert replay([str(good), "--verify"]) == 0
    assert "MATCH: 13/13" in capsys.readouterr().out
    assert FrameStore.load([str(good)], (16, 16)).frames == 13
