"""Shared test set-up: headless SDL, two threads, and small helpers."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

try:
    import torch

    torch.set_num_threads(2)
except ImportError:  # the engine tests do not need torch
    pass


@pytest.fixture(scope="session")
def plane_recording(tmp_path_factory):
    """A small recording (the plane world, 16x16, 12 ticks, random policy) to copy and damage: never write into it."""
    from engine.rollout import rollout

    out = tmp_path_factory.mktemp("plane_recording") / "plane"
    rollout("plane", out, episodes=1, ticks=12, policy="random", split=None, config={"width": 16, "height": 16},
            progress=False)
    return next(p.parent for p in out.rglob("meta.yaml"))
