"""Train / validation / test seeds, and the fixed held-out test set of arena trajectories.

Seed ranges are defined once, here, in `SPLITS`; they are disjoint half-open integer ranges, and both
level seeds and policy seeds of a split come from its range, so a test level is never trained on.

`TEST_SET` is fixed: each `TestEntry` names a level seed, a policy seed, a kind, the number of ticks,
for returning kinds the tick at which the trajectory is back at its tick-0 pose (`return_tick`), and for
"wall" the tick at which the player stopped against the wall (`contact_tick`). Kinds (`KINDS`):

    moving        a wander through the level (MOVING_TICKS)
    revisit       out along a path and back to the tick-0 pose, return_tick in [REVISIT_MIN, REVISIT_MAX]
    turn_360      a full turn in place at 6 deg/tick from the spawn, back at the tick-0 view at return_tick
    out_and_back  3-6 cells straight out, turn 180, walk back, turn to the tick-0 view at return_tick
    wall          walk straight into a wall 2+ cells away and keep pressing forward 40 ticks after contact_tick
    idle          stand still at the spawn (all NOOP)
    look_up_down  pitch up to a seeded 30-60 deg, down to minus it, back to level at return_tick
    long_walk     a wander of LONG_WALK_TICKS

Returning kinds then stand still for HOLD_TICKS. `held_out_entries(split, kind)` plans the entries of a
kind on the "test" or "validation" seeds, each kind from its own block of seeds (`SEED_BLOCKS`), so the
validation entries are twins of the test ones, planned the same way, for choosing settings on.
`entry_actions` rebuilds the action list of an entry deterministically from the physics-only simulation
(see `engine.arena.trajectories`), independent of image resolution, and checks that it still matches the
table (length, return_tick, contact_tick) — if physics or level generation change, it says how to
regenerate the table:

    python -m engine.arena.splits      # prints a fresh TEST_SET table
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.action import Action
from engine.arena.config import load_preset
from engine.arena.trajectories import (Trajectory, TrajectoryError, plan_idle, plan_look_up_down, plan_out_and_back,
                                       plan_revisit, plan_turn_360, plan_wall, plan_wander)

Split = Literal["train", "validation", "test"]

# The one place seed ranges are defined: [start, stop) per split, disjoint.
SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "validation": range(1_000_000, 1_100_000),
    "test": range(1_100_000, 1_200_000),
}

TEST_PRESET = "default"
TEST_TICK_RATE = 20.0
MOVING_TICKS = 300
REVISIT_MIN, REVISIT_MAX = 100, 400
REVISIT_HOLD = 10
HOLD_TICKS = 10  # standing still after turn_360, out_and_back and look_up_down return
TURN_TICKS = 60  # turn_360: 6 degrees per tick
WALL_PUSH_TICKS = 40  # wall: ticks of pressing forward after contact
IDLE_TICKS = 200
LONG_WALK_TICKS = 1000

Kind = Literal["moving", "revisit", "turn_360", "out_and_back", "wall", "idle", "look_up_down", "long_walk"]
KINDS: tuple[str, ...] = ("moving", "revisit", "turn_360", "out_and_back", "wall", "idle", "look_up_down",
                          "long_walk")
RETURNING_KINDS: tuple[str, ...] = ("revisit", "turn_360", "out_and_back", "look_up_down")
# Offsets into a split's range of the level seeds and policy seeds of each kind: entry i of a kind has
# level seed start + level_offset + i, policy seed start + policy_offset + i (i < SEED_BLOCK; seeds whose
# level cannot host the kind are skipped). Disjoint blocks, so no two kinds share a level or policy seed.
SEED_BLOCK = 1000
SEED_BLOCKS: dict[str, tuple[int, int]] = {
    "moving": (0, 50_000),
    "revisit": (1000, 51_000),
    "turn_360": (2000, 52_000),
    "out_and_back": (3000, 53_000),
    "wall": (4000, 54_000),
    "idle": (5000, 55_000),
    "look_up_down": (6000, 56_000),
    "long_walk": (7000, 57_000),
}
DEFAULT_COUNTS: dict[str, int] = {kind: 8 for kind in KINDS} | {"long_walk": 2}


def split_of(seed: int) -> str:
    """The split a seed belongs to; a seed outside every range is an error."""
    for name, r in SPLITS.items():
        if seed in r:
            return name
    raise ValueError(f"seed {seed} is in no split; ranges are " + ", ".join(f"{n} [{r.start}, {r.stop})"
                                                                            for n, r in SPLITS.items()))


def split_seeds(split: str, count: int, offset: int = 0) -> list[int]:
    """`count` consecutive seeds of `split`, starting `offset` seeds into its range."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    r = SPLITS[split]
    if offset < 0 or count < 0 or offset + count > len(r):
        raise ValueError(f"split {split!r} has {len(r)} seeds; cannot take {count} from offset {offset}")
    return list(r[offset:offset + count])


@dataclass(frozen=True)
class TestEntry:
    """One held-out test trajectory in the arena (preset `TEST_PRESET`, `TEST_TICK_RATE` ticks/s)."""

    __test__ = False  # not a pytest test class, despite the name

    level_seed: int
    policy_seed: int
    kind: Kind
    ticks: int  # number of actions
    return_tick: int | None = None  # RETURNING_KINDS: the tick at which the pose is back at the tick-0 pose
    split: str = "test"  # "validation" for entries made to choose settings on (see held_out_entries)
    contact_tick: int | None = None  # wall: the first tick at which forward progress stopped

    def __post_init__(self) -> None:
        if self.split not in ("test", "validation"):
            raise ValueError(f"entry split must be 'test' or 'validation', got {self.split!r}")
        for seed in (self.level_seed, self.policy_seed):
            if split_of(seed) != self.split:
                raise ValueError(f"{self.split} entry seed {seed} is not in the {self.split} range {SPLITS[self.split]}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown entry kind {self.kind!r}; expected one of {list(KINDS)}")
        if isinstance(self.ticks, bool) or not isinstance(self.ticks, int) or self.ticks < 1:
            raise ValueError(f"{self.kind} entry needs a positive int number of ticks, got {self.ticks!r}")
        if self.kind == "revisit":
            if self.return_tick is None or not REVISIT_MIN <= self.return_tick <= REVISIT_MAX:
                raise ValueError(f"revisit entry needs return_tick in [{REVISIT_MIN}, {REVISIT_MAX}], "
                                 f"got {self.return_tick}")
        for name, needed in (("return_tick", self.kind in RETURNING_KINDS), ("contact_tick", self.kind == "wall")):
            value = getattr(self, name)
            if not needed and value is not None:
                raise ValueError(f"{self.kind} entry takes no {name}, got {value}")
            if needed and (value is None or not 1 <= value <= self.ticks):
                raise ValueError(f"{self.kind} entry needs {name} in [1, ticks={self.ticks}], got {value}")


# Generated by `python -m engine.arena.splits`; checked by tests/test_arena.py.
TEST_SET: tuple[TestEntry, ...] = (
    TestEntry(level_seed=1100000, policy_seed=1150000, kind="moving", ticks=300),
    TestEntry(level_seed=1100001, policy_seed=1150001, kind="moving", ticks=300),
    TestEntry(level_seed=1100002, policy_seed=1150002, kind="moving", ticks=300),
    TestEntry(level_seed=1100003, policy_seed=1150003, kind="moving", ticks=300),
    TestEntry(level_seed=1100004, policy_seed=1150004, kind="moving", ticks=300),
    TestEntry(level_seed=1100005, policy_seed=1150005, kind="moving", ticks=300),
    TestEntry(level_seed=1100006, policy_seed=1150006, kind="moving", ticks=300),
    TestEntry(level_seed=1100007, policy_seed=1150007, kind="moving", ticks=300),
    TestEntry(level_seed=1101000, policy_seed=1151000, kind="revisit", ticks=205, return_tick=195),
    TestEntry(level_seed=1101001, policy_seed=1151001, kind="revisit", ticks=194, return_tick=184),
    TestEntry(level_seed=1101002, policy_seed=1151002, kind="revisit", ticks=289, return_tick=279),
    TestEntry(level_seed=1101003, policy_seed=1151003, kind="revisit", ticks=259, return_tick=249),
    TestEntry(level_seed=1101004, policy_seed=1151004, kind="revisit", ticks=239, return_tick=229),
    TestEntry(level_seed=1101005, policy_seed=1151005, kind="revisit", ticks=199, return_tick=189),
    TestEntry(level_seed=1101006, policy_seed=1151006, kind="revisit", ticks=119, return_tick=109),
    TestEntry(level_seed=1101007, policy_seed=1151007, kind="revisit", ticks=156, return_tick=146),
    TestEntry(level_seed=1102000, policy_seed=1152000, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102001, policy_seed=1152001, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102002, policy_seed=1152002, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102003, policy_seed=1152003, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102004, policy_seed=1152004, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102005, policy_seed=1152005, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102006, policy_seed=1152006, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1102007, policy_seed=1152007, kind="turn_360", ticks=70, return_tick=60),
    TestEntry(level_seed=1103000, policy_seed=1153000, kind="out_and_back", ticks=111, return_tick=101),
    TestEntry(level_seed=1103001, policy_seed=1153001, kind="out_and_back", ticks=111, return_tick=101),
    TestEntry(level_seed=1103002, policy_seed=1153002, kind="out_and_back", ticks=137, return_tick=127),
    TestEntry(level_seed=1103003, policy_seed=1153003, kind="out_and_back", ticks=111, return_tick=101),
    TestEntry(level_seed=1103004, policy_seed=1153004, kind="out_and_back", ticks=111, return_tick=101),
    TestEntry(level_seed=1103005, policy_seed=1153005, kind="out_and_back", ticks=137, return_tick=127),
    TestEntry(level_seed=1103006, policy_seed=1153006, kind="out_and_back", ticks=137, return_tick=127),
    TestEntry(level_seed=1103007, policy_seed=1153007, kind="out_and_back", ticks=111, return_tick=101),
    TestEntry(level_seed=1104000, policy_seed=1154000, kind="wall", ticks=106, contact_tick=66),
    TestEntry(level_seed=1104001, policy_seed=1154001, kind="wall", ticks=106, contact_tick=66),
    TestEntry(level_seed=1104002, policy_seed=1154002, kind="wall", ticks=125, contact_tick=85),
    TestEntry(level_seed=1104003, policy_seed=1154003, kind="wall", ticks=92, contact_tick=52),
    TestEntry(level_seed=1104004, policy_seed=1154004, kind="wall", ticks=103, contact_tick=63),
    TestEntry(level_seed=1104005, policy_seed=1154005, kind="wall", ticks=106, contact_tick=66),
    TestEntry(level_seed=1104006, policy_seed=1154006, kind="wall", ticks=100, contact_tick=60),
    TestEntry(level_seed=1104007, policy_seed=1154007, kind="wall", ticks=106, contact_tick=66),
    TestEntry(level_seed=1105000, policy_seed=1155000, kind="idle", ticks=200),
    TestEntry(level_seed=1105001, policy_seed=1155001, kind="idle", ticks=200),
    TestEntry(level_seed=1105002, policy_seed=1155002, kind="idle", ticks=200),
    TestEntry(level_seed=1105003, policy_seed=1155003, kind="idle", ticks=200),
    TestEntry(level_seed=1105004, policy_seed=1155004, kind="idle", ticks=200),
    TestEntry(level_seed=1105005, policy_seed=1155005, kind="idle", ticks=200),
    TestEntry(level_seed=1105006, policy_seed=1155006, kind="idle", ticks=200),
    TestEntry(level_seed=1105007, policy_seed=1155007, kind="idle", ticks=200),
    TestEntry(level_seed=1106000, policy_seed=1156000, kind="look_up_down", ticks=82, return_tick=72),
    TestEntry(level_seed=1106001, policy_seed=1156001, kind="look_up_down", ticks=86, return_tick=76),
    TestEntry(level_seed=1106002, policy_seed=1156002, kind="look_up_down", ticks=90, return_tick=80),
    TestEntry(level_seed=1106003, policy_seed=1156003, kind="look_up_down", ticks=90, return_tick=80),
    TestEntry(level_seed=1106004, policy_seed=1156004, kind="look_up_down", ticks=74, return_tick=64),
    TestEntry(level_seed=1106005, policy_seed=1156005, kind="look_up_down", ticks=90, return_tick=80),
    TestEntry(level_seed=1106006, policy_seed=1156006, kind="look_up_down", ticks=62, return_tick=52),
    TestEntry(level_seed=1106007, policy_seed=1156007, kind="look_up_down", ticks=66, return_tick=56),
    TestEntry(level_seed=1107000, policy_seed=1157000, kind="long_walk", ticks=1000),
    TestEntry(level_seed=1107001, policy_seed=1157001, kind="long_walk", ticks=1000),
)


def held_out_test_set() -> tuple[TestEntry, ...]:
    """The fixed held-out test set (named so pytest never collects it as a test)."""
    return TEST_SET


def plan_entry(kind: str, level_seed: int, policy_seed: int, ticks: int | None = None,
               return_tick: int | None = None) -> Trajectory:
    """Plan the trajectory of `kind` for (level_seed, policy_seed) with the test set's settings.

    ticks: the length of "moving"/"long_walk" wanders (default MOVING_TICKS / LONG_WALK_TICKS); for a
    revisit with `return_tick` given, ticks - return_tick is its hold. Raises `TrajectoryError` where the
    level cannot host the kind."""
    config = load_preset(TEST_PRESET)
    rate = TEST_TICK_RATE
    if kind in ("moving", "long_walk"):
        n = ticks if ticks is not None else (MOVING_TICKS if kind == "moving" else LONG_WALK_TICKS)
        return plan_wander(config, level_seed, policy_seed, n, rate)
    if kind == "revisit":
        hold = ticks - return_tick if ticks is not None and return_tick is not None else REVISIT_HOLD
        return plan_revisit(config, level_seed, policy_seed, rate, REVISIT_MIN, REVISIT_MAX, hold_ticks=hold)
    if kind == "turn_360":
        return plan_turn_360(config, level_seed, policy_seed, rate, turn_ticks=TURN_TICKS, hold_ticks=HOLD_TICKS)
    if kind == "out_and_back":
        return plan_out_and_back(config, level_seed, policy_seed, rate, hold_ticks=HOLD_TICKS)
    if kind == "wall":
        return plan_wall(config, level_seed, policy_seed, rate, push_ticks=WALL_PUSH_TICKS)
    if kind == "idle":
        return plan_idle(config, level_seed, policy_seed, rate, ticks=IDLE_TICKS)
    if kind == "look_up_down":
        return plan_look_up_down(config, level_seed, policy_seed, rate, hold_ticks=HOLD_TICKS)
    raise ValueError(f"unknown entry kind {kind!r}; expected one of {list(KINDS)}")


def entry_trajectory(entry: TestEntry) -> Trajectory:
    """Rebuild an entry's trajectory (actions and poses); raise if it no longer matches the table."""
    regenerate = ("physics, level generation or the planner changed. Regenerate the table with "
                  "`python -m engine.arena.splits` and review the diff.")
    try:
        traj = plan_entry(entry.kind, entry.level_seed, entry.policy_seed, entry.ticks, entry.return_tick)
    except TrajectoryError as e:
        raise RuntimeError(f"{entry.kind} entry {entry} can no longer be planned ({e}): {regenerate}") from e
    if (traj.return_tick, traj.contact_tick, len(traj.actions)) != (entry.return_tick, entry.contact_tick,
                                                                    entry.ticks):
        raise RuntimeError(
            f"{entry.kind} entry {entry} is now planned with return_tick={traj.return_tick}, "
            f"contact_tick={traj.contact_tick} and {len(traj.actions)} actions: {regenerate}"
        )
    return traj


def entry_actions(entry: TestEntry) -> list[Action]:
    """The action list of a test entry (len == entry.ticks)."""
    return entry_trajectory(entry).actions


def revisit_entries(split: str = "validation", count: int = 8) -> list[TestEntry]:
    """Revisit trajectories (out and back to the tick-0 pose) on `split`'s seeds, planned the way the test
    set's were: the validation ones are for choosing settings (say, the scene memory's) without the test set."""
    if split not in ("test", "validation"):
        raise ValueError(f"revisit entries come from the 'test' or 'validation' split, not {split!r}")
    config = load_preset(TEST_PRESET)
    r = SPLITS[split]
    entries = []
    for i in range(count):
        level_seed, policy_seed = r.start + 1000 + i, r.start + 51_000 + i
        traj = plan_revisit(config, level_seed, policy_seed, TEST_TICK_RATE, REVISIT_MIN, REVISIT_MAX,
                            hold_ticks=REVISIT_HOLD)
        entries.append(TestEntry(level_seed, policy_seed, "revisit", len(traj.actions), traj.return_tick, split))
    return entries


def held_out_entries(split: str, kind: str, count: int | None = None) -> list[TestEntry]:
    """The first `count` (default `DEFAULT_COUNTS[kind]`) entries of `kind` planned on `split`'s seeds
    ('test' or 'validation'), from the kind's seed block (`SEED_BLOCKS`), skipping seeds whose level cannot
    host the kind. Deterministic; for 'test' these are the `TEST_SET` rows of that kind."""
    if split not in ("test", "validation"):
        raise ValueError(f"held-out entries come from the 'test' or 'validation' split, not {split!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown entry kind {kind!r}; expected one of {list(KINDS)}")
    count = DEFAULT_COUNTS[kind] if count is None else count
    if kind == "revisit":
        return revisit_entries(split, count)
    r = SPLITS[split]
    level_offset, policy_offset = SEED_BLOCKS[kind]
    entries: list[TestEntry] = []
    for i in range(SEED_BLOCK):
        if len(entries) >= count:
            break
        level_seed, policy_seed = r.start + level_offset + i, r.start + policy_offset + i
        if kind in ("moving", "long_walk"):  # wanders always fill their length; no need to plan them here
            ticks = MOVING_TICKS if kind == "moving" else LONG_WALK_TICKS
            entries.append(TestEntry(level_seed, policy_seed, kind, ticks, split=split))
            continue
        try:
            traj = plan_entry(kind, level_seed, policy_seed)
        except TrajectoryError:
            continue
        entries.append(TestEntry(level_seed, policy_seed, kind, len(traj.actions), traj.return_tick, split,
                                 traj.contact_tick))
    if len(entries) < count:
        raise ValueError(f"only {len(entries)} of {count} {kind} entries could be planned in the {SEED_BLOCK} "
                         f"seeds of its {split} block")
    return entries


# Policy seeds of the realism reference walks (reference_entries): offset into a split's range, one block per kind.
REFERENCE_POLICY_OFFSET = 60_000


def reference_entries(entries: list[TestEntry]) -> list[TestEntry]:
    """Other wanders on the levels of `entries` ("moving" or "long_walk", each as long as its entry), with policy
    seeds of their own: the true frames that a dream's frames are compared with, unpaired (the realism of what it
    invents). Entry i of a kind gets policy seed start + REFERENCE_POLICY_OFFSET + SEED_BLOCKS[kind] index + i."""
    out = []
    for i, e in enumerate(entries):
        if e.kind not in ("moving", "long_walk"):
            raise ValueError(f"reference walks are wanders on the levels of moving or long_walk entries, not {e.kind}")
        block = KINDS.index(e.kind) * SEED_BLOCK
        out.append(TestEntry(level_seed=e.level_seed, policy_seed=SPLITS[e.split].start + REFERENCE_POLICY_OFFSET + block + i,
                             kind=e.kind, ticks=e.ticks, split=e.split))
    return out


def _generate() -> list[TestEntry]:
    return [e for kind in KINDS for e in held_out_entries("test", kind)]


if __name__ == "__main__":
    print("TEST_SET: tuple[TestEntry, ...] = (")
    for e in _generate():
        extra = f", return_tick={e.return_tick}" if e.return_tick is not None else ""
        extra += f", contact_tick={e.contact_tick}" if e.contact_tick is not None else ""
        print(f'    TestEntry(level_seed={e.level_seed}, policy_seed={e.policy_seed}, kind="{e.kind}", '
              f"ticks={e.ticks}{extra}),")
    print(")")
