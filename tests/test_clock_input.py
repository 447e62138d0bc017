"""The fixed-time-step accumulator and per-tick input gathering, with a fake clock."""

import pytest

from engine.clock import FixedStep
from engine.input import InputAccumulator, Keymap, KeymapError, key_code


def test_accumulator_runs_whole_ticks_and_keeps_the_remainder():
    fs = FixedStep(tick_rate=20, max_catchup=4)
    assert fs.advance(0.0) == 1  # first frame shows the world at once
    assert fs.advance(0.02) == 0
    assert fs.advance(0.05) == 1  # 50 ms elapsed in total
    assert fs.advance(0.149) == 1  # 99 ms: one more tick, 49 ms carried
    assert fs.advance(0.151) == 1
    assert fs.dropped == 0


def test_catchup_is_capped_and_the_backlog_is_dropped_and_counted():
    fs = FixedStep(tick_rate=20, max_catchup=3)
    fs.advance(0.0)
    assert fs.advance(1.0) == 3  # 20 ticks due, only 3 run
    assert fs.dropped == 17
    assert fs.advance(1.05) == 1  # no spiral: back to one tick per 50 ms
    assert fs.dropped == 17


def test_pause_forgets_elapsed_time():
    fs = FixedStep(tick_rate=20)
    fs.advance(0.0)
    fs.pause()
    assert fs.advance(10.0) == 1  # resuming does not burst 200 ticks
    assert fs.advance(10.05) == 1


def test_invalid_rates_are_rejected():
    with pytest.raises(ValueError, match="tick_rate"):
        FixedStep(tick_rate=0)
    with pytest.raises(ValueError, match="max_catchup"):
        FixedStep(max_catchup=0)


def test_a_key_tapped_and_released_inside_one_tick_still_counts():
    inp = InputAccumulator()
    inp.press("forward", 0.01)
    inp.release("forward", 0.02)
    action, first = inp.take()
    assert action.forward and first == 0.01
    action, first = inp.take()  # the next tick: not held any more
    assert not action.forward and first is None


def test_held_keys_persist_across_ticks():
    inp = InputAccumulator()
    inp.press("sprint")
    assert inp.take()[0].sprint and inp.take()[0].sprint
    inp.release("sprint")
    assert not inp.take()[0].sprint


def test_mouse_motion_is_summed_over_the_tick_not_last_event_wins():
    inp = InputAccumulator(mouse_sensitivity=0.5)
    for dx, dy in [(2, 0), (3, -2), (5, 4)]:
        inp.mouse(dx, dy)
    action, _ = inp.take()
    assert action.yaw == pytest.approx(0.5 * 10)
    assert action.pitch == pytest.approx(-0.5 * 2)  # mouse down looks down
    assert inp.take()[0].yaw == 0.0  # cleared after the tick


def test_keyboard_turning_uses_the_turn_speed():
    inp = InputAccumulator(key_turn_speed=4.0)
    inp.press("turn_left")
    assert inp.take()[0].yaw == -4.0


def test_default_keymap_loads_and_maps_keys():
    km = Keymap.load()
    assert km.actions[key_code("w")] == "forward"
    assert km.commands[key_code("f12")] == "screenshot"
    assert any("forward" in line for line in km.help_lines())


def test_user_keymap_overrides_entries(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("actions:\n  forward: [i]\n  back: [k]\nlook:\n  invert_y: true\n")
    km = Keymap.load(f)
    assert km.actions[key_code("i")] == "forward"
    assert key_code("w") not in km.actions  # replaced, not added
    assert km.actions[key_code("a")] == "left"  # untouched defaults stay
    assert km.invert_y is True


@pytest.mark.parametrize(
    "text, message",
    [
        ("actions:\n  forward: [wq]\n", "unknown key name 'wq'"),
        ("actions:\n  forwrd: [w]\n", "unknown binding actions.'forwrd'"),
        ("buttons:\n  x: [w]\n", "unknown section"),
        ("look:\n  mouse_sensitivity: fast\n", "look.mouse_sensitivity must be float"),
        ("commands:\n  pause: [w]\n", "bound to both"),
        ("actions: [w]\n", "must map sections"),
    ],
)
def test_keymap_errors_name_the_problem(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(KeymapError, match=message) as err:
        Keymap.load(f)
    assert "bad.yaml" in str(err.value) or "keymap.yaml" in str(err.value)
