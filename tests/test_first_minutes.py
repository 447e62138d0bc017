"""What a newcomer meets in the first minutes: the HUD's wording and wrapping, keys that cannot act, R, input spread
over the ticks of one displayed frame, screenshot and .ply names, replay's pace and end notice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import Action, Observation, World, make_world
from engine.game import Game, HeadlessFrontend, Hud, LoopConfig, LoopStats, file_safe, short_path
from engine.input import InputAccumulator, Keymap
from engine.recording import Recording
from engine.replay import main as replay_main
from engine.replay import recorded_pace, verify
from engine.window import hud_lines, overlay_rect, wrap_text
from tests.test_game import FakeClock


class SlowWorld(World):
    """Each step costs `cost` seconds of the fake clock; remembers its actions and seeds."""

    name = "slow"
    deterministic = True

    def __init__(self, clock=None, cost=0.0):
        self.clock, self.cost, self.actions, self.seeds, self.t = clock, cost, [], [], 0

    def reset(self, seed):
        self.seeds.append(seed)
        self.t = 0
        return Observation(rgb=np.zeros((4, 4, 3), np.uint8), tick=0)

    def step(self, action):
        if self.clock is not None:
            self.clock.t += self.cost
        self.actions.append(action)
        self.t += 1
        return Observation(rgb=np.full((4, 4, 3), self.t % 256, np.uint8), tick=self.t)


class Scripted(HeadlessFrontend):
    """Calls `on_poll(n, inp, now)` at every poll; returns what it returns as commands."""

    def __init__(self, on_poll, keymap=None):
        super().__init__()
        self.on_poll, self.polls, self.hud = on_poll, 0, None
        if keymap is not None:
            self.keymap = keymap

    def poll(self, inp, now):
        self.polls += 1
        return self.on_poll(self.polls, inp, now) or []

    def present(self, obs, hud):
        super().present(obs, hud)
        self.hud = hud


def game_for(world, frontend, clock, **cfg):
    return Game(world, frontend, LoopConfig(**cfg), input=InputAccumulator(mouse_sensitivity=1.0), clock=clock,
                sleep=clock.sleep, log=lambda s: None)


# -- input per tick ---------------------------------------------------------------------------------------------


def test_a_turn_made_while_several_ticks_were_due_is_spread_over_them():
    """A slow world: 4 ticks are due per displayed frame; a 24 px turn gathered before the frame is 6 per tick,
    not 24 on the first tick and 0 on the next three."""
    clock = FakeClock()
    world = SlowWorld(clock)

    def on_poll(n, inp, now):
        if n == 2:  # the second frame's poll: 0.2 s (4 ticks) have passed
            inp.mouse(24, 0, now)

    game = game_for(world, Scripted(on_poll), clock, tick_rate=20, max_catchup=8)
    game.frame()  # the first frame runs one tick at once
    clock.t = 0.2
    game.frame()
    yaws = [a.yaw for a in world.actions[1:]]
    assert yaws == pytest.approx([6.0, 6.0, 6.0, 6.0])


def test_input_is_polled_again_before_each_tick_of_one_frame():
    """Motion that arrives while a slow tick runs reaches the next tick, and held keys count on every tick."""
    clock = FakeClock()
    world = SlowWorld(clock, cost=0.05)

    def on_poll(n, inp, now):
        if n == 2:
            inp.press("forward", now)
        if n == 4:  # polled between the 2nd and 3rd tick of that frame
            inp.mouse(10, 0, now)

    frontend = Scripted(on_poll)
    game = game_for(world, frontend, clock, tick_rate=20, max_catchup=4)
    game.frame()
    clock.t += 0.2
    before = len(world.actions)
    game.frame()
    ran = world.actions[before:]
    assert len(ran) >= 3 and frontend.polls >= 1 + len(ran)
    assert all(a.forward for a in ran)
    assert ran[0].yaw == 0 and ran[1].yaw == 0 and sum(a.yaw for a in ran) == pytest.approx(10.0)


def test_take_with_a_share_keeps_the_rest_for_the_next_ticks():
    inp = InputAccumulator(mouse_sensitivity=1.0)
    inp.mouse(12, -8)
    a, _ = inp.take(share=0.25)
    b, _ = inp.take(share=1 / 3)
    c, _ = inp.take(share=0.5)
    d, _ = inp.take()
    assert [x.yaw for x in (a, b, c, d)] == pytest.approx([3, 3, 3, 3])
    assert sum(x.pitch for x in (a, b, c, d)) == pytest.approx(8)
    with pytest.raises(ValueError):
        inp.take(share=0)


# -- R, keys that cannot act, screenshots --------------------------------------------------------------------------


def test_r_starts_a_new_episode_with_a_new_seed_shown_in_the_hud_and_recorded(tmp_path):
    clock = FakeClock()
    world = make_world("plane", width=16, height=16)
    cmds = {3: ["reset"], 6: ["reset"]}

    def on_poll(n, inp, now):
        inp.press("forward", now)
        return cmds.get(n)

    frontend = Scripted(on_poll)
    game = game_for(world, frontend, clock, tick_rate=20, max_ticks=12, seed=7, record_dir=tmp_path / "rec")
    game.run()
    assert game.episode_seed == 9 and frontend.hud.seed == 9
    assert frontend.hud.episode_tick == game.obs.tick < game.stats.ticks  # the episode's tick, not the lifetime's
    rec = Recording(tmp_path / "rec")
    assert [r.seed for r in rec if r.reset] == [7, 8, 9]
    assert verify(rec).matched


def test_keys_a_world_cannot_act_on_say_what_would_make_them_work():
    clock = FakeClock()
    frontend = Scripted(lambda n, inp, now: ["memory", "view", "save_memory"] if n == 1 else None,
                        keymap=Keymap.load())
    said = []
    game = Game(SlowWorld(), frontend, LoopConfig(max_ticks=2), clock=clock, sleep=clock.sleep, log=said.append)
    game.run()
    memory, view, save = said[:3]
    assert memory.startswith("M (scene memory on/off) does nothing in slow") and "--set memory=true" in memory
    assert view.startswith("Tab (cycle views)") and "--world split" in view
    assert save.startswith("F6 ") and "--set memory=true" in save


def test_screenshot_names_say_the_world_seed_and_tick(tmp_path):
    clock = FakeClock()
    frontend = Scripted(lambda n, inp, now: ["screenshot"] if n == 4 else None)
    game = game_for(SlowWorld(), frontend, clock, tick_rate=20, max_ticks=5, seed=3)
    game.config.screenshots_root = tmp_path
    game.world_name = "my:World"
    game.run()
    (shot,) = tmp_path.iterdir()
    assert shot.name.startswith("my_World-seed3-tick0000")
    assert shot.suffix == ".png" and file_safe("mygame:MyGame") == "mygame_MyGame"


def test_short_path_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert short_path(tmp_path / "recordings" / "x") == "recordings/x"
    assert short_path("/elsewhere/x") == "/elsewhere/x"


# -- the HUD --------------------------------------------------------------------------------------------------------


def measure(text: str) -> int:
    return 7 * len(text)


def test_wrap_text_keeps_every_line_inside_the_width_and_cuts_with_dots():
    long = "recording saved: recordings/dream-20261130-184257-with-a-very-long-name (311 steps). Replay: " \
           "python -m engine.replay recordings/dream-20261130-184257-with-a-very-long-name"
    lines = wrap_text(long, 300, measure, max_lines=10)
    assert all(measure(line) <= 300 for line in lines) and len(lines) > 1
    assert "".join(lines).replace(" ", "") == long.replace(" ", "")  # nothing lost when it fits in max_lines
    cut = wrap_text(long, 300, measure, max_lines=2)
    assert len(cut) == 2 and cut[-1].endswith("...") and all(measure(line) <= 300 for line in cut)
    assert wrap_text("short", 300, measure) == ["short"]
    assert wrap_text("", 300, measure) == [""]


def test_hud_lines_fit_the_window_explain_dropped_and_say_esc_again_quits():
    stats = LoopStats(ticks=900, dropped=412, dropped_recent=12, fps=30.0, ticks_per_s=12.5, step_ms=60.0)
    hud = Hud(world="dream", stats=stats, paused=False, recording=True, seed=4, episode_tick=17, tick_rate=20,
              message="recording saved: recordings/dream-20261130-184257 (311 steps). Replay: python -m "
                      "engine.replay recordings/dream-20261130-184257")
    lines = [text for text, _ in hud_lines(hud, captured=False, width=400, measure=measure)]
    assert all(measure(line) <= 400 for line in lines)
    text = "\n".join(lines)
    assert "seed 4" in text and "tick 17" in text and "tick 900" not in text
    assert "dropped 12 in 5 s: the world runs slower than 20 ticks/s" in text.replace("\n", " ")
    assert "Esc again: quit" in text.replace("\n", " ")
    assert "engine.replay" in text  # wrapped, not cut at the edge
    captured = [t for t, _ in hud_lines(hud, captured=True, width=400, measure=measure)]
    assert not any("Esc again" in t for t in captured)
    quiet = Hud(world="arena", stats=LoopStats(), paused=False, recording=False)
    assert not any("dropped" in t for t, _ in hud_lines(quiet, True, 400, measure))
    earlier = Hud(world="arena", stats=LoopStats(dropped=40), paused=False, recording=False)  # a start-up hitch, passed
    assert not any("dropped" in t for t, _ in hud_lines(earlier, True, 400, measure))


def test_overlays_larger_than_the_window_are_scaled_down_to_fit_centred():
    assert overlay_rect((300, 200), (640, 640)) == (170, 220, 300, 200)  # fits: as it is, centred
    x, y, w, h = overlay_rect((812, 420), (640, 640))  # the help at 640 px: wider than the window
    assert (x, w, h) == (8, 624, round(420 * 624 / 812)) and y == (640 - h) // 2
    x, y, w, h = overlay_rect((812, 420), (400, 300))  # ... and at 400 x 300: the width decides again
    assert (x, w, h) == (8, 384, round(420 * 384 / 812)) and 8 <= y and y + h <= 292
    assert overlay_rect((300, 900), (400, 300))[1:] == (8, round(300 * 284 / 900), 284)  # a tall one: its height


def test_hud_lines_fit_with_the_real_font():
    pygame = pytest.importorskip("pygame")
    pygame.font.init()
    font = pygame.font.Font(None, 20)
    hud = Hud(world="dream", stats=LoopStats(dropped=3, dropped_recent=3), paused=True, recording=False,
              message="x" * 400, world_text="dream 41 ms (memory 9.1 ms)")
    for text, _ in hud_lines(hud, captured=False, width=640 - 46, measure=lambda t: font.size(t)[0]):
        assert font.size(text)[0] <= 640 - 46


# -- replay ---------------------------------------------------------------------------------------------------------


def record_plane(path, ticks=30, tick_rate=20.0, clock_step=0.05):
    clock = FakeClock()
    world = make_world("plane", width=16, height=16)

    class Pace(HeadlessFrontend):
        def poll(self, inp, now):
            inp.press("forward", now)
            return []

    game = Game(world, Pace(), LoopConfig(tick_rate=tick_rate, max_ticks=ticks, record_dir=path, video=False),
                clock=clock, sleep=clock.sleep, log=lambda s: None)
    game.run()
    return Recording(path)


def test_recorded_pace_is_the_pace_played_never_above_the_tick_rate(tmp_path):
    rec = record_plane(tmp_path / "r")
    rows = rec.rows
    for i, row in enumerate(rows):  # as if the world had kept up with 8 ticks/s only, with one long pause
        row["time"] = i / 8.0 + (30.0 if i > 20 else 0.0)
    assert recorded_pace(rec) == pytest.approx(8.0)
    for i, row in enumerate(rows):  # a headless run flat out: 1,000 ticks/s
        row["time"] = i / 1000.0
    assert recorded_pace(rec) == pytest.approx(rec.meta.tick_rate)


def test_replay_says_its_pace_and_ends_with_a_notice(tmp_path, capsys):
    record_plane(tmp_path / "r", ticks=10)
    assert replay_main([str(tmp_path / "r"), "--headless", "--speed", "2"]) == 0
    out = capsys.readouterr().out
    assert "replaying 11 frames of plane at" in out and "--speed 2" in out
    assert "end of the recording (11 frames)" in out
    summary = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert summary["ticks"] == 10
    with pytest.raises(SystemExit) as refused:  # argparse refuses it (engine.cli.number), exit 2
        replay_main([str(tmp_path / "r"), "--headless", "--speed", "0"])
    assert refused.value.code == 2


def test_a_finished_replay_in_a_window_holds_its_last_frame_and_r_plays_it_again(tmp_path):
    from engine.replay import RecordedActions, ReplayWorld

    rec = record_plane(tmp_path / "r", ticks=6)
    clock = FakeClock()
    said = []

    frontend = Scripted(lambda n, inp, now: (["reset"] if n == 40 else ["quit"] if n == 80 else None))
    frontend.headless = False  # as a window: the last frame stays with the notice
    game = Game(ReplayWorld(str(tmp_path / "r")), frontend,
                LoopConfig(tick_rate=20, end_message="end of the recording: Esc quits, R plays it again"),
                source=RecordedActions(rec), clock=clock, sleep=clock.sleep, log=said.append)
    game.run()
    assert said.count("end of the recording: Esc quits, R plays it again") == 2  # once, and again after R
    assert game.stats.ticks == 2 * (len(rec) - 1)
    assert "the recording again, from its first frame" in said and not any("seed 1" in s for s in said)


# -- the dream's memory keys ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_dream_without_memory_defers_to_the_engine_and_saves_ply_into_memory(tmp_path, monkeypatch):
    from tests.randmodel import random_model_dir

    model = random_model_dir(tmp_path / "model")
    plain = make_world("dream", checkpoint=str(model))
    plain.reset(0)
    assert plain.command("memory") is None and plain.command("save_memory") is None
    plain.close()
    monkeypatch.chdir(tmp_path)
    dream = make_world("dream", checkpoint=str(model), memory=True)
    dream.reset(0)
    for _ in range(2):
        dream.step(Action(forward=True))
    reply = dream.command("save_memory")
    dream.close()
    (ply,) = (tmp_path / "memory").iterdir()
    assert ply.name.startswith("dream-tick000002-") and ply.suffix == ".ply" and str(ply.name) in reply
    assert not (tmp_path / "screenshots").exists()
