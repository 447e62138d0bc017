"""Worlds declare their own commands and keys; the keymap binds them for the running world, the help overlay lists
them, they are recorded on the tick they happened and replayed; the HUD's latency goes blank when input stops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import Observation, World
from engine.game import Game, LoopConfig
from engine.input import InputAccumulator, Keymap, KeymapError, key_code
from engine.recording import Recording
from engine.replay import ReplayWorld, verify
from tests.test_first_minutes import Scripted, SlowWorld
from tests.test_game import FakeClock


class Lamp(World):
    """A world with its own command: 'lamp' (L) switches the frame between dark and bright."""

    name = "lamp"
    deterministic = True
    commands = {"lamp": ("l", "lamp on/off")}

    def __init__(self):
        self.on, self.t = False, 0

    def reset(self, seed):
        self.on, self.t = False, 0
        return self._obs()

    def step(self, action):
        self.t += 1
        return self._obs()

    def command(self, name):
        if name == "lamp":
            self.on = not self.on
            return f"lamp {'on' if self.on else 'off'}"
        return None

    def _obs(self):
        return Observation(rgb=np.full((4, 4, 3), 200 if self.on else 10, np.uint8), tick=self.t)


def test_the_default_keymap_binds_no_world_command_and_for_world_binds_the_declared_keys():
    km = Keymap.load()
    assert key_code("m") not in km.commands and key_code("tab") not in km.commands
    lamp = km.for_world("lamp", Lamp.commands)
    assert lamp.commands[key_code("l")] == "lamp"
    # The shipped worlds' commands keep their keys elsewhere, to say what would make them work.
    assert lamp.commands[key_code("m")] == "memory" and lamp.commands[key_code("tab")] == "view"
    rows = dict(lamp.help_rows())
    assert rows["lamp: lamp on/off"] == "l"
    assert not any(what.startswith(("memory", "view", "save memory")) for what in rows)  # they cannot act here
    assert "forward" in rows and km.commands == Keymap.load().commands  # for_world copies


def test_dream_and_split_declare_their_commands_and_the_help_lists_them_per_world():
    from worldmodel.dream import DreamWorld
    from worldmodel.split import SplitWorld

    assert {k: v[0] for k, v in DreamWorld.commands.items()} == {"memory": "m", "save_memory": "f6"}
    assert SplitWorld.commands["view"][0] == "tab"
    dream = dict(Keymap.load().for_world("dream", DreamWorld.commands).help_rows())
    split = dict(Keymap.load().for_world("split", SplitWorld.commands).help_rows())
    assert dream["dream: scene memory on/off"] == "m" and dream["dream: save the scene memory as .ply"] == "f6"
    assert not any("views" in what for what in dream)
    assert split["split: cycle views: split, dream, truth"] == "tab"


def test_a_user_keymap_rebinds_a_world_command_and_a_taken_default_key_is_left_out(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("commands:\n  memory: [n]\n")
    km = Keymap.load(f).for_world("dream", {"memory": ("m", "scene memory on/off")})
    assert km.commands[key_code("n")] == "memory" and key_code("m") not in km.commands
    with pytest.warns(UserWarning, match="bound to 'forward'"):
        clash = Keymap.load().for_world("lamp", {"lamp": ("w", "lamp on/off")})
    assert clash.actions[key_code("w")] == "forward" and "lamp" not in clash.names
    with pytest.raises(KeymapError, match="engine's own"):
        Keymap.load().for_world("bad", {"pause": ("l", "x")})


def test_world_commands_are_recorded_on_their_tick_replayed_and_verified(tmp_path):
    clock = FakeClock()
    frontend = Scripted(lambda n, inp, now: ["lamp"] if n in (3, 6) else None,
                        keymap=Keymap.load().for_world("lamp", Lamp.commands))
    said = []
    game = Game(Lamp(), frontend, LoopConfig(tick_rate=20, max_ticks=8, record_dir=tmp_path / "rec"),
                input=InputAccumulator(), clock=clock, sleep=clock.sleep, log=said.append)
    game.run()
    assert "lamp on" in said and "lamp off" in said
    rec = Recording(tmp_path / "rec")
    with_commands = [r.index for r in rec if r.commands]
    assert len(with_commands) == 2 and all(rec[i].commands == ["lamp"] for i in with_commands)
    lit = [int(r.obs.rgb[0, 0, 0]) for r in rec]
    assert 200 in lit and lit[with_commands[0]] == 200 and lit[with_commands[0] - 1] == 10  # applied before the step
    assert verify(rec, world=Lamp()).matched  # re-simulated with the commands
    assert verify(rec, world=type("NoCmd", (Lamp,), {"commands": {}})()).first_mismatch == with_commands[0]
    replay = ReplayWorld(str(tmp_path / "rec"))
    replay.reset(0)
    huds = [replay.step(None).info["hud"] for _ in range(len(rec) - 1)]
    assert "command: lamp" in huds[with_commands[0] - 1] and "command" not in huds[0]


def test_a_world_command_that_cannot_act_says_so_in_any_world():
    clock = FakeClock()
    frontend = Scripted(lambda n, inp, now: ["lamp", "memory"] if n == 1 else None)
    said = []

    class Dim(Lamp):
        def command(self, name):
            return None

    Game(Dim(), frontend, LoopConfig(max_ticks=2), clock=clock, sleep=clock.sleep, log=said.append).run()
    assert said[0] == "L (lamp on/off) cannot act now in lamp"
    assert said[1].startswith("M (scene memory on/off) does nothing in lamp") and "--set memory=true" in said[1]


def test_hud_latency_is_blank_when_no_input_arrived_recently():
    clock = FakeClock()

    def on_poll(n, inp, now):
        if n <= 3:
            inp.press("forward", now)
            inp.release("forward", now)

    frontend = Scripted(on_poll)
    game = Game(SlowWorld(), frontend, LoopConfig(tick_rate=20, max_ticks=5), input=InputAccumulator(), clock=clock,
                sleep=clock.sleep, log=lambda s: None)
    game.run()
    assert not np.isnan(game.hud().stats.latency_ms)  # a number while input is fresh
    clock.t += 2.0  # nothing pressed for two seconds
    assert np.isnan(game.hud().stats.latency_ms)
    assert not np.isnan(game.stats.latency_ms)  # the run's summary keeps its figure


def test_a_keymap_file_binds_a_worlds_own_command_by_name_and_a_typo_is_named(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("commands:\n  lamp: [k]\n")
    km = Keymap.load(f).for_world("lamp", Lamp.commands)
    assert km.commands[key_code("k")] == "lamp" and key_code("l") not in km.commands
    with pytest.raises(KeymapError, match="commands.'lamp'.*world 'arena'"):
        Keymap.load(f).for_world("arena", {})


def test_play_names_a_keymap_command_no_world_has(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "mine.yaml"
    f.write_text("commands:\n  lmap: [k]\n")
    p = subprocess.run([sys.executable, "play.py", "--world", "plane", "--headless", "--ticks", "1", "--keymap", str(f)],
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert p.returncode == 2 and "commands.'lmap'" in p.stderr and "Traceback" not in p.stderr
