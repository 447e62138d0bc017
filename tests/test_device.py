"""The device plumbing on any machine (issue 22): `--device` resolves in one place, a CUDA request without CUDA is
one clear line, models load onto the resolved device, and the CUDA code path's device-agnostic parts (bf16 autocast,
a bf16 KV cache, noise drawn on the host) run here on the CPU. The CUDA-vs-CPU comparisons are tests/test_gpu.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.randmodel import random_model_dir
from worldmodel.device import DeviceError, autocast, default_amp, resolve_device

ROOT = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_model_dir(tmp_path_factory.mktemp("models") / "tiny-random")


def test_auto_picks_cuda_only_when_present():
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert default_amp(torch.device("cpu")) is False and default_amp(torch.device("cuda")) is True
    assert isinstance(autocast(torch.device("cpu")), type(autocast(torch.device("cpu"), False)))  # fp32 on the CPU


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(DeviceError, match=r"device 'cuda' was asked for but CUDA is not available.*--device cpu"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda:1")
    assert issubclass(DeviceError, ValueError)  # the command-line tools print ValueErrors as one line


def test_unknown_device_names_the_choices():
    with pytest.raises(DeviceError, match="unknown device 'tpu'.*auto, cpu, cuda"):
        resolve_device("tpu")


def test_models_load_onto_the_resolved_device(model_dir):
    from worldmodel.checkpoint import load_model

    model = load_model(model_dir, device="auto")
    assert model.device == resolve_device("auto")
    assert {p.device for p in model.dynamics.parameters()} == {model.device}
    assert {p.device for p in model.autoencoder.parameters()} == {model.device}
    if not CUDA:
        with pytest.raises(DeviceError, match="CUDA is not available"):
            load_model(model_dir, device="cuda")


def test_dream_records_its_device_and_runs_the_autocast_path_on_the_cpu(model_dir):
    """amp=True is what CUDA runs by default (bf16 autocast, a bf16 KV cache, host-drawn noise): here on the CPU."""
    import worldmodel  # noqa: F401
    from engine.action import Action
    from worldmodel.dream import DreamWorld

    torch.set_num_threads(1)
    plain = DreamWorld(str(model_dir), device="cpu", context_noise=0.1)
    amp = DreamWorld(str(model_dir), device="cpu", amp=True, context_noise=0.1)
    assert plain.config["device"] == "cpu" and plain.config["amp"] is False and amp.config["amp"] is True
    frames = []
    for world in (plain, amp):
        obs = world.reset(5)
        obs = world.step(Action(forward=True, yaw=2.0))
        assert world.dreams.state.kv.dtype == (torch.bfloat16 if world is amp else torch.float32)
        frames.append(obs.rgb.astype(np.int16))
        world.close()
    assert np.abs(frames[0] - frames[1]).mean() < 2.0  # bf16 rounding, not another frame


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_command_lines_refuse_cuda_in_one_line(model_dir, tmp_path):
    for cmd in ([sys.executable, "play.py", "--checkpoint", str(model_dir), "--headless", "--ticks", "1", "--device", "cuda"],
                [sys.executable, "-m", "worldmodel.train", "--config", "assets/configs/model_tiny.yaml",
                 "--out", str(tmp_path / "run"), "--device", "cuda"],
                [sys.executable, "-m", "worldmodel.evaluate", "--checkpoint", str(model_dir), "--out", str(tmp_path / "ev"),
                 "--device", "cuda"]):
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("error: device 'cuda' was asked for but CUDA is not available"), last


def test_memory_images_are_the_same_with_worker_processes(tmp_path):
    """worldmodel.train --workers N (the GPU script's data preparation) makes exactly the single-process images."""
    from engine.rollout import rollout

    data = tmp_path / "data"
    rollout("arena", data, episodes=1, ticks=24, policy="explore", split="train", config={"width": 64, "height": 64},
            progress=False)
    fast = ["--set", "ae_steps=2", "--set", "steps=2", "--set", "ae_batch=4", "--set", "batch_size=2", "--no-progress"]
    images = []
    for workers in (1, 2):
        out = tmp_path / f"run{workers}"
        p = subprocess.run([sys.executable, "-m", "worldmodel.train", "--config", "assets/configs/model_tiny.yaml",
                            "--data", str(data), "--out", str(out), "--device", "cpu", "--workers", str(workers), *fast],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        with np.load(out / "state" / "latents.npz") as z:
            images.append(z["memory"])
    assert images[0][:, -1].max() > 0  # there are memory images (coverage > 0 somewhere)
    np.testing.assert_array_equal(images[0], images[1])
