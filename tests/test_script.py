import pytest

from engine.action import Action
from engine.script import (
    PolicyError,
    PolicySource,
    ScriptError,
    compile_script,
    load_policy,
    load_script,
)
from engine.world import Observation
from tests.conftest import ROOT

import numpy as np


def test_steps_hold_turn_wait_repeat():
    actions = compile_script(
        {"steps": [
            {"hold": ["forward"], "ticks": 3},
            {"turn": {"yaw": 90}, "seconds": 0.5},
            {"wait": 2},
            {"repeat": 2, "steps": [{"hold": "left", "ticks": 1}, {"hold": ["right", "sprint"], "ticks": 1}]},
        ]},
        tick_rate=20,
    )
    assert len(actions) == 3 + 10 + 2 + 4
    assert all(a.forward for a in actions[:3])
    assert sum(a.yaw for a in actions[3:13]) == pytest.approx(90.0)
    assert actions[13] == Action()
    assert [a.held for a in actions[15:19]] == [("left",), ("right", "sprint")] * 2


@pytest.mark.parametrize(
    "steps, message",
    [
        ([{"hold": ["forward"]}], r"steps\[0\]: give exactly one duration"),
        ([{"hold": ["forwards"], "ticks": 2}], r"steps\[0\]: hold must list keys"),
        ([{"ticks": 2, "spin": 3}], r"unknown field\(s\) \['spin'\]"),
        ([{"wait": 0}], "at least one tick"),
        ([{"ticks": 1.5}], "whole number"),
        ([{"turn": {"yaw": float("nan")}, "ticks": 2}], "finite"),
        ([{"repeat": 2, "steps": [{"hold": ["jump"]}]}], r"steps\[0\]\.steps\[0\]: give exactly one duration"),
        ([{"repeat": 0, "steps": [{"wait": 1}]}], "positive whole number"),
        ([], "non-empty list of steps"),
    ],
)
def test_malformed_scripts_get_errors_naming_the_step(steps, message):
    with pytest.raises(ScriptError, match=message):
        compile_script({"steps": steps}, source="my.yaml")


def test_bad_yaml_file_and_missing_file(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("steps: [ {hold: [forward], ticks: 3}\n")
    with pytest.raises(ScriptError, match="not valid YAML"):
        load_script(f)
    with pytest.raises(ScriptError, match="does not exist"):
        load_script(tmp_path / "nope.yaml")


def test_shipped_scripts_compile_and_the_tour_returns():
    for path in sorted((ROOT / "assets" / "scripts").glob("*.yaml")):
        assert load_script(path), path
    tour = load_script(ROOT / "assets" / "scripts" / "tour.yaml")
    # Integrate the walk on a flat plane: the tour must end where it began, facing the same way.
    import math

    x = z = yaw = 0.0
    for a in tour:
        yaw += a.yaw
        step = float(a.forward) - float(a.back)
        x += step * math.sin(math.radians(yaw))
        z -= step * math.cos(math.radians(yaw))
    assert abs(x) < 1e-6 and abs(z) < 1e-6 and yaw % 360 == pytest.approx(0.0, abs=1e-6)


def test_policy_loading_and_errors():
    assert isinstance(load_policy("idle")(None), Action)
    rnd = load_policy("engine.script:RandomPolicy")
    rnd.reset(1)
    obs = Observation(rgb=np.zeros((2, 2, 3), np.uint8))
    first = [rnd(obs) for _ in range(5)]
    rnd.reset(1)
    assert [rnd(obs) for _ in range(5)] == first  # seeded
    with pytest.raises(PolicyError, match="no policy named"):
        load_policy("nonexistent")
    with pytest.raises(PolicyError, match="has no attribute"):
        load_policy("engine.script:Nope")

    def broken(obs):
        raise RuntimeError("boom")

    with pytest.raises(PolicyError, match=r"policy 'broken' raised at tick 7: RuntimeError: boom"):
        PolicySource(broken, name="broken").next(Observation(rgb=np.zeros((2, 2, 3), np.uint8), tick=7))
    with pytest.raises(PolicyError, match="returned int"):
        PolicySource(lambda o: 3, name="three").next(obs)
