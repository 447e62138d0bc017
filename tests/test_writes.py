"""Files people keep are written whole or not at all (engine.files), and a failed write in the window is a HUD
message, not the end of the session; nothing a data file names is written outside its folder."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from engine.files import atomic_path, atomic_write_text, io_reason
from engine.game import Game, HeadlessFrontend, LoopConfig
from engine.world import Observation, World
from tests.conftest import ROOT


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed in the middle")
    assert target.read_text() == "old" and not list(tmp_path.glob("*.tmp"))
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_a_ply_export_over_a_file_size_limit_keeps_the_good_ply(tmp_path):
    """The case that lost data: `write_ply` over a good .ply under a file-size limit left a truncated file."""
    from splat.gaussians import Gaussians
    from splat.ply import read_ply, write_ply

    rng = np.random.default_rng(0)
    n = 2000
    g = Gaussians.empty(n)
    g.append(means=rng.normal(size=(n, 3)).astype(np.float32), quats=np.tile([1, 0, 0, 0], (n, 1)).astype(np.float32),
             scales=np.full((n, 3), 0.05, np.float32), opacities=np.full(n, 0.5, np.float32),
             colors=rng.random((n, 3)).astype(np.float32), tick=0)
    good = tmp_path / "scene.ply"
    write_ply(good, g)
    before = good.read_bytes()
    script = textwrap.dedent(f"""
        import resource, signal, sys
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from splat.ply import read_ply, write_ply
        g = read_ply({str(good)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails with EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_ply({str(good)!r}, g)
        except OSError as e:
            print("refused", e.errno)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "refused" in out.stdout, out.stderr
    assert good.read_bytes() == before and len(read_ply(good)) == n  # the good file, whole
    assert not list(tmp_path.glob("*.tmp"))


class _Still(World):
    name = "../../outside"  # a world name as a shared recording's meta.yaml could give it
    deterministic = True

    def reset(self, seed):
        return Observation(rgb=np.zeros((8, 8, 3), np.uint8), tick=0)

    def step(self, action):
        return Observation(rgb=np.zeros((8, 8, 3), np.uint8), tick=1)

    @property
    def config(self):
        return {}

    commands = {"save_memory": ("f6", "save")}

    def command(self, name):
        raise OSError(errno.ENOSPC, "No space left on device")


class _FullDisk(HeadlessFrontend):
    def screenshot(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


def test_a_full_disk_in_the_window_is_a_message_and_the_session_goes_on(tmp_path):
    said = []
    game = Game(_Still(), _FullDisk(), LoopConfig(max_ticks=3, recordings_root=tmp_path / "recordings",
                                                  screenshots_root=tmp_path / "shots"), log=said.append)
    game.command("screenshot")
    game.command("save_memory")
    assert game.running
    assert any("screenshot not saved: the disk is full" in s for s in said), said
    assert any("save memory failed: the disk is full" in s for s in said), said


def test_a_recording_started_in_a_world_named_like_a_path_stays_in_the_recordings_folder(tmp_path):
    root = tmp_path / "sub" / "recordings"
    game = Game(_Still(), HeadlessFrontend(), LoopConfig(max_ticks=3, recordings_root=root), log=lambda s: None)
    game.command("record")
    path = game.recorder.path
    game.stop_recording()
    assert path.parent == root and path.exists()
    assert not (tmp_path / "outside").exists() and [p.name for p in tmp_path.iterdir()] == ["sub"]


def test_io_reasons_are_said_in_words():
    assert io_reason(OSError(errno.ENOSPC, "x")) == "the disk is full"
    assert "file-size limit" in io_reason(OSError(errno.EFBIG, "x"))
    assert "no permission" in io_reason(PermissionError(errno.EACCES, "x", "/root/a"))


@pytest.mark.parametrize("what", ["cam_to_world", "depth"])
def test_training_refuses_a_recording_with_one_nan_and_names_it(tmp_path, what):
    """The case that lost data: one NaN pose value (or NaN depth in one chunk) trained a model of NaN weights."""
    import json

    from engine.rollout import rollout
    from worldmodel.data import DataError, FrameStore

    out = tmp_path / "arena"
    rollout("arena", out, episodes=1, ticks=12, policy="explore", split="train", config={"width": 32, "height": 32},
            progress=False)
    rec = next(p.parent for p in out.rglob("meta.yaml"))
    if what == "cam_to_world":
        rows = [json.loads(line) for line in (rec / "ticks.jsonl").read_text().splitlines()]
        rows[5]["cam_to_world"][0][3] = float("nan")
        (rec / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        chunk = sorted(rec.glob("frames/*.npz"))[0]
        with np.load(chunk, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["depth"][7, 3, 3] = np.nan
        np.savez(chunk, **arrays)
    says = r"ticks.jsonl:6: 'cam_to_world' holds NaN" if what == "cam_to_world" else "depth is NaN or infinite at tick 7"
    with pytest.raises(DataError, match=says):  # the recording and the tick (its ticks.jsonl line) are named
        FrameStore.load([str(out)], (32, 32))


def test_a_non_finite_loss_stops_before_the_weights_change():
    import torch

    from worldmodel.training.common import TrainingDiverged, apply_gradients

    net = torch.nn.Linear(3, 1)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=0.1)
    loss = net(torch.tensor([[float("nan"), 1.0, 2.0]])).sum()
    with pytest.raises(TrainingDiverged, match="last checkpoint is kept"):
        apply_gradients(net, opt, loss, grad_clip=1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    apply_gradients(net, opt, net(torch.ones(1, 3)).sum(), grad_clip=1.0)  # a finite step still steps
    assert not all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
