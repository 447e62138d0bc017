"""The game loop with a fake clock and a scripted frontend: pacing, commands, recording."""

import numpy as np
import pytest

from engine import Action, Observation, World, make_world
from engine.game import Game, HeadlessFrontend, LoopConfig
from engine.input import InputAccumulator
from engine.recording import Recording
from engine.replay import verify
from engine.script import ScriptSource


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, dt):
        self.t += max(dt, 0.0)


class CountingWorld(World):
    """Shows the tick number as its colour; remembers every action it was given; each step costs `cost` s."""

    name = "counting"
    deterministic = True

    def __init__(self, clock=None, cost=0.0):
        self.clock, self.cost, self.actions, self.t = clock, cost, [], 0

    def reset(self, seed):
        self.t = 0
        return self._obs()

    def step(self, action):
        if self.clock is not None:
            self.clock.t += self.cost
        self.actions.append(action)
        self.t += 1
        return self._obs()

    def _obs(self):
        return Observation(rgb=np.full((4, 4, 3), self.t % 256, np.uint8), tick=self.t)


class ScriptedFrontend(HeadlessFrontend):
    """Plays a list of (time, callback) input events into the accumulator, like a window would."""

    def __init__(self, events=()):
        super().__init__()
        self.events = sorted(events, key=lambda e: e[0])
        self.presented = []

    def poll(self, inp, now):
        commands = []
        while self.events and self.events[0][0] <= now:
            _, ev = self.events.pop(0)
            result = ev(inp, now)
            if isinstance(result, str):
                commands.append(result)
        return commands

    def present(self, obs, hud):
        super().present(obs, hud)
        self.presented.append((obs.tick, hud.paused))


def make_game(world, frontend, clock, **cfg):
    return Game(world, frontend, LoopConfig(**cfg), input=InputAccumulator(mouse_sensitivity=1.0),
                clock=clock, sleep=clock.sleep, log=lambda s: None)


def test_realtime_loop_holds_the_tick_rate():
    clock = FakeClock()
    game = make_game(CountingWorld(), ScriptedFrontend(), clock, tick_rate=20, max_ticks=40)
    stats = game.run()
    assert stats.ticks == 40
    assert clock.t == pytest.approx(40 / 20 - 0.05, abs=0.06)  # 40 ticks take ~2 s of (fake) time
    assert stats.dropped == 0


def test_a_slow_world_drops_ticks_instead_of_spiralling():
    clock = FakeClock()
    world = CountingWorld(clock, cost=0.2)  # each step takes 4 ticks' worth of time
    game = make_game(world, ScriptedFrontend(), clock, tick_rate=20, max_catchup=2, max_ticks=20)
    stats = game.run()
    assert stats.ticks == 20
    assert stats.dropped > 0
    # Frames keep coming: never more than max_catchup ticks between two presents.
    ticks = [t for t, _ in game.frontend.presented]
    assert max(np.diff(ticks)) <= 2


def test_the_latency_is_measured_while_a_key_is_held():
    """Holding W for 3 s gives no new input events after the first, yet the HUD's latency stays a number (the held
    key is sampled each tick), not '-' once the first event is a second old."""
    clock = FakeClock()
    events = [(0.0, lambda inp, now: inp.press("forward", now))]
    game = make_game(CountingWorld(clock, cost=0.01), ScriptedFrontend(events), clock, tick_rate=20, max_ticks=60)
    game.run()
    assert 0 < game.stats.latency_ms < 100 and clock.t > 2.5


def test_a_window_shows_the_episode_first_view_before_the_first_tick():
    clock = FakeClock()
    frontend = ScriptedFrontend()
    frontend.headless = False  # as a window
    make_game(CountingWorld(), frontend, clock, tick_rate=20, max_ticks=3).run()
    assert [t for t, _ in frontend.presented][:2] == [0, 1]


def test_the_dropped_warning_counts_the_last_seconds_and_clears():
    """A start-up hitch drops ticks; five seconds of keeping up later the HUD's count is back to 0 (the total stays)."""
    clock = FakeClock()
    world = CountingWorld(clock)
    game = make_game(world, ScriptedFrontend(), clock, tick_rate=20, max_catchup=2, max_ticks=1000)
    game.frame()
    clock.t += 1.0  # a one-second hitch: ~20 ticks due, 2 run, the rest dropped
    game.frame()
    hitch = game.stats.dropped
    assert hitch >= 17 and game.stats.dropped_recent == hitch
    while clock.t < 7.5:
        game._pace()
        game.frame()
    assert game.stats.dropped == hitch and game.stats.dropped_recent == 0


def test_a_held_turn_key_turns_as_far_when_ticks_are_dropped():
    """1.5 s of a held turn key on a world too slow for 20 ticks/s: ticks are dropped, but the turn they would have
    made carries into the ticks that run, so the view turns (nearly) 30 ticks x 6 degrees, as when none is dropped."""
    turned = {}
    for cost in (0.0, 0.13):
        clock = FakeClock()
        world = CountingWorld(clock, cost=cost)
        events = [(0.0, lambda inp, now: inp.press("turn_right", now)), (1.5, lambda inp, now: inp.release("turn_right", now))]
        game = make_game(world, ScriptedFrontend(events), clock, tick_rate=20, max_catchup=2, max_ticks=200)
        game.input.key_turn_speed = 6.0
        while clock.t < 3.0 and game.running:
            game.frame()
            game._pace()
        turned[cost] = (sum(a.yaw for a in world.actions), game.stats.dropped)
    (fast, none_dropped), (slow, dropped) = turned[0.0], turned[0.13]
    assert none_dropped == 0 and dropped > 5
    assert fast == pytest.approx(180.0, abs=6.5), turned
    # the ticks that run in the frame that sees the release (max_catchup of them) turn no more: at most 2 x 6 degrees
    # short, where without the carry only the ticks that ran turned (about 2 in 5 here: ~72 degrees)
    assert fast - 2 * 6.0 - 0.5 <= slow <= fast + 0.5, turned


def test_tap_inside_a_tick_and_mouse_sum_reach_the_world():
    clock = FakeClock()
    events = [
        (0.06, lambda inp, now: inp.press("jump", now)),
        (0.07, lambda inp, now: inp.release("jump", now)),
        (0.061, lambda inp, now: inp.mouse(3, 0, now)),
        (0.08, lambda inp, now: inp.mouse(4, -1, now)),
    ]
    world = CountingWorld()
    frontend = ScriptedFrontend(events)
    game = make_game(world, frontend, clock, tick_rate=20, max_ticks=4)
    # Poll often (like a window at 100 Hz) so the events land between ticks.
    frontend.max_fps = 100
    game.run()
    jumps = [a for a in world.actions if a.jump]
    assert len(jumps) == 1 and jumps[0].yaw == pytest.approx(7.0) and jumps[0].pitch == pytest.approx(1.0)
    assert game.stats.latency_ms == pytest.approx((0.10 - 0.06) * 1e3, abs=15)


def test_pause_single_step_and_reset():
    clock = FakeClock()
    events = [
        (0.12, lambda inp, now: "pause"),
        (0.5, lambda inp, now: "step"),
        (0.9, lambda inp, now: "step"),
        (1.2, lambda inp, now: "pause"),
        (1.3, lambda inp, now: "reset"),
        (1.6, lambda inp, now: "quit"),
    ]
    world = CountingWorld()
    game = make_game(world, ScriptedFrontend(events), clock, tick_rate=20)
    game.run()
    presented = game.frontend.presented
    paused_ticks = sorted({t for t, paused in presented if paused})
    assert paused_ticks[-1] - paused_ticks[0] == 2  # exactly two single steps while paused
    assert not game.running
    assert world.t < 10  # reset at 1.3 s restarted the count


def test_script_source_drives_the_run_and_ends_it():
    clock = FakeClock()
    world = CountingWorld()
    script = [Action(forward=True), Action(left=True, yaw=2.0), Action()]
    game = Game(world, ScriptedFrontend(), LoopConfig(realtime=False), source=ScriptSource(script),
                clock=clock, sleep=clock.sleep, log=lambda s: None)
    stats = game.run()
    assert world.actions == script and stats.ticks == 3


def test_recording_started_mid_episode_verifies(tmp_path):
    clock = FakeClock()
    world = make_world("plane", width=16, height=16)
    events = [(0.3, lambda inp, now: inp.press("forward", now)), (0.31, lambda inp, now: inp.mouse(5, 2, now))]
    game = make_game(world, ScriptedFrontend(events), clock, tick_rate=20, max_ticks=30, seed=9)
    game.config.recordings_root = tmp_path
    game.frontend.events.append((0.6, lambda inp, now: "record"))  # F5 in the middle of an episode
    game.frontend.events.append((1.0, lambda inp, now: inp.release("forward", now)))
    game.frontend.events.sort(key=lambda e: e[0])
    game.run()
    (path,) = list(tmp_path.iterdir())
    rec = Recording(path)
    assert not rec[0].reset and rec.prefix is not None and rec.prefix[0] == 9
    assert any(r.action and r.action.forward for r in rec)
    result = verify(rec)
    assert result.matched and result.identical_rgb == len(rec)


class BadWorld(CountingWorld):
    def step(self, action):
        obs = super().step(action)
        obs.rgb = obs.rgb.astype(np.float32)
        return obs


def test_a_world_returning_bad_observations_is_named_with_the_tick():
    clock = FakeClock()
    game = make_game(BadWorld(), ScriptedFrontend(), clock, max_ticks=3)
    from engine.world import ObservationError

    with pytest.raises(ObservationError, match=r"world 'counting' at tick 1: rgb must be a uint8 array"):
        game.run()


class ToggleWorld(World):
    """A world whose frame depends on a toggle the player can flip (as the dream's memory does)."""

    name = "toggle"
    deterministic = True
    commands = {"memory": ("m", "toggle")}

    def __init__(self) -> None:
        self.on, self.t = True, 0

    @property
    def config(self):
        return {}

    def reset(self, seed):
        self.on, self.t = True, 0
        return self._obs()

    def step(self, action):
        self.t += 1 if self.on else 7
        return self._obs()

    def command(self, name):
        self.on = not self.on
        return f"toggle {'on' if self.on else 'off'}"

    def _obs(self):
        return Observation(rgb=np.full((4, 4, 3), self.t % 256, np.uint8), tick=self.t)


def test_a_recording_started_after_a_world_command_replays_it_in_its_prefix(tmp_path):
    """M before F5 changed what the prefix dreamed; the prefix did not carry it, so such a recording never verified."""
    clock = FakeClock()
    events = [(0.2, lambda inp, now: "memory"), (0.5, lambda inp, now: "memory"), (0.8, lambda inp, now: "record")]
    game = make_game(ToggleWorld(), ScriptedFrontend(events), clock, tick_rate=20, max_ticks=30, seed=1)
    game.config.recordings_root = tmp_path
    game.run()
    (path,) = list(tmp_path.iterdir())
    rec = Recording(path)
    assert not rec[0].reset and sorted(rec.prefix_commands) == [4, 10]  # off before step 4, on again before 10
    result = verify(rec, world=ToggleWorld())
    assert result.matched and result.identical_rgb == len(rec)
