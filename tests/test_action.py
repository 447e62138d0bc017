import json
import math

import numpy as np
import pytest

from engine.action import ACTION_DIM, ACTION_NAMES, Action, ActionError, encode_actions


def test_encoding_round_trip_and_layout():
    a = Action(forward=True, sprint=True, yaw=-3.25, pitch=1.5)
    v = a.to_array()
    assert v.dtype == np.float32 and v.shape == (ACTION_DIM,)
    assert v[ACTION_NAMES.index("forward")] == 1.0 and v[ACTION_NAMES.index("back")] == 0.0
    assert v[ACTION_NAMES.index("yaw")] == -3.25
    assert Action.from_array(v) == a
    assert encode_actions([a, Action()]).shape == (2, ACTION_DIM)


def test_json_round_trip_is_exact():
    a = Action(left=True, jump=True, yaw=0.1 + 0.2, pitch=-7.123456789)
    back = Action.from_json(json.loads(json.dumps(a.to_json())))
    assert back == a  # float64 look deltas survive JSON exactly


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_look_is_rejected_with_a_clear_message(bad):
    with pytest.raises(ActionError, match="yaw.*finite"):
        Action(yaw=bad)
    vec = np.zeros(ACTION_DIM, np.float32)
    vec[-1] = bad
    with pytest.raises(ActionError, match="pitch"):
        Action.from_array(vec)


def test_bad_keys_and_shapes_name_the_problem():
    with pytest.raises(ActionError, match="unknown action key.*crouch"):
        Action.from_keys(["forward", "crouch"])
    with pytest.raises(ActionError, match="unknown action field"):
        Action.from_json({"keys": [], "yawn": 1})
    with pytest.raises(ActionError, match="has 8 values"):
        Action.from_array([0, 1, 0])
    with pytest.raises(ActionError, match="radians"):
        Action(yaw=1000.0)
