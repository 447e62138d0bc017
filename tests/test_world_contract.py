"""One contract every World keeps, run over every world the project registers."""

import numpy as np
import pytest

import engine
from engine import Action, make_world, validate_observation
from engine.recording import RecordingMeta, RecordingWriter


def _replay_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "rec"
    world = make_world("plane", width=16, height=12)
    with RecordingWriter(path, RecordingMeta("plane", world.config, 1, 20.0, deterministic=True), video=False) as rec:
        rec.write(world.reset(1), None, reset=True, seed=1)
        for i in range(8):
            a = Action(forward=True, yaw=3.0)
            rec.write(world.step(a), a)
    return {"path": str(path)}


# Small configurations of each registered world, so the contract runs in seconds.
SMALL = {
    "plane": lambda f: {"width": 16, "height": 12},
    "replay": _replay_config,
    "arena": lambda f: {"width": 32, "height": 32},
}


def registered():
    import play  # noqa: F401  (the entry point registers the project's optional worlds)

    names = list(engine.available_worlds())
    return [n for n in names if n in SMALL] + [pytest.param(n, marks=pytest.mark.skip(reason=f"no small config for {n!r} in this test"))
                                               for n in names if n not in SMALL]


@pytest.mark.parametrize("name", registered())
def test_world_contract(name, tmp_path_factory):
    config = SMALL[name](tmp_path_factory)
    world = make_world(name, **config)
    try:
        first = validate_observation(world.reset(0), name, 0)
        assert first.tick == 0
        ticks = [first.tick]
        for action in [Action(forward=True), Action(yaw=10.0, pitch=-5.0), Action(left=True, sprint=True), Action()]:
            obs = validate_observation(world.step(action), name, len(ticks))
            ticks.append(obs.tick)
            assert obs.size == first.size
        assert ticks == sorted(ticks)
        # config rebuilds an equivalent world (recordings depend on it)
        twin = make_world(name, **world.config)
        if world.deterministic:
            a = world.reset(3)
            b = twin.reset(3)
            assert np.array_equal(a.rgb, b.rgb)
            for act in [Action(forward=True, yaw=4.0)] * 3:
                a, b = world.step(act), twin.step(act)
            assert np.array_equal(a.rgb, b.rgb)
        twin.close()
    finally:
        world.close()
        world.close()  # closing twice is allowed


def test_engine_imports_no_neural_package():
    """engine/ runs worlds by name; the dream and the memory plug in from outside and are never imported by it."""
    import subprocess
    import sys

    modules = ["engine." + m for m in ("action", "app", "clock", "game", "glcontext", "gymenv", "input", "plane",
                                       "recording", "replay", "rollout", "script", "window", "world")]
    modules += ["engine.arena." + m for m in ("config", "level", "physics", "policies", "render", "splits",
                                              "trajectories", "world")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('worldmodel', 'splat', 'torch'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"engine modules pulled in {out.stdout.strip()}"
