"""The dream's camera from the player's input: an action-driven motion model fitted to recordings, with
collisions against the scene memory.

A learned ego-motion head integrated tick after tick drifts (the shipped one: 1.7 m and 9.6° over 200 idle
ticks, and it walks through walls: docs/evaluation.md). Memory-conditioned world models take the camera from the
actions instead (WorldMem computes Minecraft poses from the actions; Matrix-Game and GEN3C condition on the camera
path). This module does that for a first-person game, with the numbers read from the game's own recordings:

- looking: yaw and pitch change by `look_gain` x the mouse's degrees (pitch clipped at `pitch_limit`);
- walking: on the ground the eye moves `walk` (or `sprint`) metres per tick along the held keys' direction in
  the new heading (diagonals normalised), nothing when no key is held: no input, no motion;
- jumping: a jump key on the ground starts an arc `jump` metres per tick upwards, losing `gravity` per tick,
  until the eye is back at its ground height;
- collisions: the player is a box of half-width `radius` from the floor (`eye_height` below the eye) to
  `head` above the eye; a move along world x, then z (as the arena's physics does it) stops where that box
  would reach something upright in the scene memory: Gaussian centres above the `knee` that span `wall_span` of
  height within 0.3 m (the scene memory's `obstacles()`: all from real views, dreamed ones lifted from near). A wall the dream has
  seen or dreamed stops the camera; one it has never seen does not; dreamed points that have held the player's
  moves `unstick_ticks` in a row let it through (a dream's depth can wall a player in where the world has none).

`fit_motion` reads the look, walk, jump and eye numbers from (actions, camera poses) of recorded episodes, on the
ticks where the camera moved freely; the collision numbers are chosen on validation walls. `held_out_error` measures how
well the model explains held-out episodes, so a game whose camera does not work this way is told so and keeps
the learned head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable

import numpy as np

from engine.action import ACTION_NAMES
from worldmodel.pose import decompose, ego_motion

_I = {name: i for i, name in enumerate(ACTION_NAMES)}


@dataclass
class MotionModel:
    """The camera's rules for one game (model.yaml `info.motion`); lengths in metres per tick, angles degrees."""

    look_gain_yaw: float = 1.0
    look_gain_pitch: float = 1.0
    pitch_limit: float = 85.0
    walk: float = 0.15
    sprint: float = 0.30
    jump: float = 0.0  # upward metres in the first airborne tick before gravity; 0: the game has no jump
    gravity: float = 0.0  # metres per tick per tick
    eye_height: float = 1.6  # the eye above the floor when standing
    radius: float = 0.3  # the player's half-width for collisions; 0 turns collisions off
    head: float = 0.2  # the player's top above the eye
    knee: float = 0.5  # memory points lower than this above the floor do not block (a dreamed floor's depth errors
    # lift its points up to ~0.4 m: validation walls)
    wall_span: float = 0.4  # ... nor do points that are not upright: a blocker spans this much height within 0.3 m
    unstick_ticks: float = 60  # dreamed points that held the player's moves this many ticks in a row stop blocking

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"motion.{f.name} must be a finite number >= 0 (got {v!r})")

    @classmethod
    def from_info(cls, info: dict[str, Any] | None) -> "MotionModel | None":
        """The model.yaml `info.motion` mapping (numbers only) -> a MotionModel; None when absent."""
        if not info:
            return None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(info) - known - {"held_out"})
        if unknown:
            raise ValueError(f"info.motion has unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: float(v) for k, v in info.items() if k in known})

    def to_info(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}


class CameraMotion:
    """The camera state the motion model needs between ticks (airborne speed and the ground's eye height)."""

    def __init__(self, model: MotionModel) -> None:
        self.model = model
        self.vy = 0.0
        self.ground_y = 0.0
        self.airborne = False
        self.held = 0  # ticks in a row dreamed points alone have held the player

    def reset(self, cam_to_world: np.ndarray) -> None:
        """A new episode starts standing at this camera."""
        self.ground_y = float(cam_to_world[1, 3])
        self.vy = 0.0
        self.airborne = False
        self.held = 0

    def step(self, cam_to_world: np.ndarray, action: np.ndarray, obstacles: np.ndarray | None = None,
             dreamed: np.ndarray | None = None) -> np.ndarray:
        """The ego-motion [dx, dy, dz, dyaw, dpitch] (worldmodel.pose) of one tick from `cam_to_world` for the
        action vector [8]; `obstacles` [N, 3] world points that block the player (None: nothing blocks), `dreamed`
        [M, 3] points that block too, until they have held the player `unstick_ticks` ticks in a row (a dream's
        depth can wall a player in where the world has no wall: after that the player walks through them)."""
        m = self.model
        a = np.asarray(action, np.float64)
        eye, yaw0, pitch0 = decompose(cam_to_world)
        dyaw = m.look_gain_yaw * a[_I["yaw"]]
        pitch1 = float(np.clip(pitch0 + m.look_gain_pitch * a[_I["pitch"]], -m.pitch_limit, m.pitch_limit))
        dpitch = pitch1 - float(pitch0)
        # the wish direction in the new heading, as world x/z
        y1 = np.radians(float(yaw0) + dyaw)
        fwd = np.array([np.sin(y1), -np.cos(y1)])
        right = np.array([np.cos(y1), np.sin(y1)])
        wish = fwd * (a[_I["forward"]] - a[_I["back"]]) + right * (a[_I["right"]] - a[_I["left"]])
        norm = float(np.linalg.norm(wish))
        speed = m.sprint if a[_I["sprint"]] > 0.5 else m.walk
        step_xz = wish / norm * speed if norm > 0 else np.zeros(2)
        # vertical: jump from the ground, fall back to it
        if not self.airborne and a[_I["jump"]] > 0.5 and m.jump > 0:
            self.airborne, self.vy = True, m.jump + m.gravity
        dy = 0.0
        if self.airborne:
            self.vy -= m.gravity
            dy = self.vy
            if eye[1] + dy <= self.ground_y:
                dy = self.ground_y - eye[1]
                self.airborne, self.vy = False, 0.0
        pos = eye.copy()
        hard = obstacles if obstacles is not None and len(obstacles) else np.zeros((0, 3))
        if m.radius > 0 and (len(hard) or (dreamed is not None and len(dreamed))):
            firm = self._move(pos, step_xz, hard)
            soft = firm
            if dreamed is not None and len(dreamed):
                soft = self._move(pos, step_xz, np.concatenate([hard, dreamed]))
            # ticks in a row that dreamed points alone held a move back (a tick without a move does not count or reset)
            if np.any(step_xz != 0):
                self.held = self.held + 1 if np.linalg.norm(firm - soft) > 1e-9 else 0
            pos = soft if self.held <= m.unstick_ticks else firm
        else:
            pos[[0, 2]] += step_xz
        d = pos - eye
        # express the displacement in the previous heading's axes (worldmodel.pose)
        y0 = np.radians(float(yaw0))
        r0, f0 = np.array([np.cos(y0), np.sin(y0)]), np.array([np.sin(y0), -np.cos(y0)])
        dxz = d[[0, 2]]
        return np.array([dxz @ r0, dy, dxz @ f0, dyaw, dpitch], np.float32)

    def _move(self, pos: np.ndarray, step_xz: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Move the eye by step_xz along world x then z, stopping the player's box at the obstacle points."""
        m = self.model
        feet, top = pos[1] - m.eye_height, pos[1] + m.head
        # only what the body could hit: above the knees (floor Gaussians are not walls), below the head
        near = points[(points[:, 1] > feet + m.knee) & (points[:, 1] < top)
                      & (np.abs(points[:, 0] - pos[0]) < m.radius + abs(step_xz[0]) + 0.5)
                      & (np.abs(points[:, 2] - pos[2]) < m.radius + abs(step_xz[1]) + 0.5)]
        p = pos.copy()
        for axis, delta in ((0, step_xz[0]), (2, step_xz[1])):
            if delta == 0:
                continue
            other = 2 - axis
            lane = near[np.abs(near[:, other] - p[other]) < m.radius]
            sign = 1.0 if delta > 0 else -1.0
            gap = (lane[:, axis] - p[axis]) * sign - m.radius  # how far the box's face can go before each point
            ahead = gap >= -1e-6
            limit = _first_wall(gap[ahead], lane[ahead, 1], m.wall_span)
            p[axis] += sign * min(abs(delta), max(limit, 0.0))
        return p


def _first_wall(gap: np.ndarray, height: np.ndarray, span: float, depth: float = 0.3) -> float:
    """The nearest gap (metres) at which the points within `depth` beyond it span at least `span` metres of height:
    something upright (a wall, a pillar, a box's face), not a few points of a dreamed floor whose depth lifted them
    above the knees. inf when there is none."""
    if gap.size == 0:
        return np.inf
    order = np.argsort(gap)
    g, h = gap[order], height[order]
    for i in range(g.size):
        window = h[i:np.searchsorted(g, g[i] + depth, side="right")]
        if window.max() - window.min() >= span:
            return float(g[i])
    return np.inf


BLOCKED_STEP_M = 1e-3  # a horizontal step shorter than this with a move key held: the move was blocked


def fit_motion(episodes: Iterable[tuple[np.ndarray, np.ndarray]]) -> MotionModel:
    """Fit a MotionModel to episodes of (actions [T, 8], camera-to-world [T + 1, 4, 4]).

    Look gains: least squares of the change of yaw / pitch on the mouse's degrees (pitch only away from its limit).
    Walk / sprint: the median horizontal step on ticks with a movement key on the ground that moved freely (steps that
    did not move at all are blocked ones, left out; then those shorter than 80% of the median, partly blocked); a key
    held on 10 or more ticks that never moved the camera is a ValueError saying so, not a speed of 0.
    Jump / gravity: from the vertical steps of airborne arcs.
    Eye height: the median eye height on flat, grounded ticks (the floor at y = 0 in the recordings' frame)."""
    acts, motions, eyes, pitches = [], [], [], []
    for actions, c2w in episodes:
        actions = np.asarray(actions, np.float64)
        if len(c2w) != len(actions) + 1:
            raise ValueError(f"an episode needs one more camera pose than actions (got {len(c2w)} and {len(actions)})")
        acts.append(actions)
        motions.append(ego_motion(c2w[:-1], c2w[1:]).astype(np.float64))
        eye, _, pitch = decompose(c2w)
        eyes.append(eye[:-1, 1])
        pitches.append(pitch[:-1])
    A, M = np.concatenate(acts), np.concatenate(motions)
    eye_y, pitch0 = np.concatenate(eyes), np.concatenate(pitches)
    grounded = np.abs(M[:, 1]) < 1e-6
    yaw_in = A[:, _I["yaw"]]
    ok = np.abs(yaw_in) > 1e-3
    gain_yaw = float((yaw_in[ok] @ M[ok, 3]) / (yaw_in[ok] @ yaw_in[ok])) if ok.any() else 1.0
    pin = A[:, _I["pitch"]]
    # a pitch limit shows as input that did not move the view at the largest pitch seen; none seen: 89 degrees
    top = np.abs(pitch0).max() if len(pitch0) else 0.0
    clipped = (np.abs(pin) > 1e-3) & (np.abs(M[:, 4]) < 0.5 * np.abs(pin)) & (np.abs(pitch0) > top - 0.5)
    pitch_limit = float(np.round(top, 3)) if clipped.sum() >= 3 else 89.0
    ok = (np.abs(pin) > 1e-3) & (np.abs(pitch0 + pin) < pitch_limit - 1.0)
    gain_pitch = float((pin[ok] @ M[ok, 4]) / (pin[ok] @ pin[ok])) if ok.any() else 1.0
    keys = np.abs(A[:, _I["forward"]] - A[:, _I["back"]]) + np.abs(A[:, _I["right"]] - A[:, _I["left"]]) > 0
    step = np.hypot(M[:, 0], M[:, 2])
    # A held move key that left the camera where it was is a blocked step (a game that stops at walls rather than
    # sliding along them), never a speed: left out before the median, however many there are.
    moved = step > BLOCKED_STEP_M
    speeds = []
    for sprinting in (False, True):
        sel = keys & grounded & ((A[:, _I["sprint"]] > 0.5) == sprinting)
        s = step[sel & moved]
        if sel.sum() >= 10 and not s.size:
            raise ValueError(f"the camera did not move on any of the {int(sel.sum())} ticks with a move key held"
                             f"{' and sprint' if sprinting else ''} on the ground: no {'sprint' if sprinting else 'walk'} "
                             "speed to fit (do the recordings' poses follow the camera?)")
        if s.size:
            med = np.median(s)
            s = s[s >= 0.8 * med]  # partly blocked steps (sliding along a wall) are shorter
        speeds.append(float(np.median(s)) if s.size else None)
    walk = speeds[0] if speeds[0] is not None else 0.15
    sprint = speeds[1] if speeds[1] is not None else walk
    # airborne arcs: consecutive vertical steps fall by `gravity` each tick
    dy = M[:, 1]
    falls = -(dy[1:] - dy[:-1])
    arc = (np.abs(dy[1:]) > 1e-6) & (np.abs(dy[:-1]) > 1e-6) & (dy[1:] < dy[:-1])
    gravity = float(np.median(falls[arc])) if arc.sum() >= 3 else 0.0
    starts = np.flatnonzero((A[:, _I["jump"]] > 0.5) & (dy > 1e-6) & np.r_[True, np.abs(dy[:-1]) < 1e-6])
    jump = float(np.median(dy[starts])) if starts.size else 0.0
    eye_height = float(np.median(eye_y[grounded])) if grounded.any() else 1.6
    return MotionModel(look_gain_yaw=gain_yaw, look_gain_pitch=gain_pitch, pitch_limit=pitch_limit, walk=walk,
                       sprint=sprint, jump=jump, gravity=gravity, eye_height=eye_height)


def held_out_error(model: MotionModel, episodes: Iterable[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean absolute per-tick error of the rules (no obstacles) against recorded episodes, per ego-motion component
    (metres, degrees), on every tick (blocked ones included: the error there is the collision the memory handles)."""
    errs = []
    for actions, c2w in episodes:
        cam = CameraMotion(model)
        cam.reset(c2w[0])
        for t, a in enumerate(np.asarray(actions, np.float64)):
            errs.append(np.abs(cam.step(c2w[t], a) - ego_motion(c2w[t], c2w[t + 1])))
    e = np.mean(errs, 0) if errs else np.zeros(5)
    return {k: round(float(v), 5) for k, v in zip(("dx_m", "dy_m", "dz_m", "dyaw_deg", "dpitch_deg"), e)}


def arena_episodes(prompt_config: dict[str, Any], count: int, ticks: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(actions, camera poses) of the arena's training episodes, as `engine.rollout --split train` recorded them."""
    from engine.rollout import episode_seeds
    from worldmodel.posefit import ground_truth_episode

    out = []
    for level, policy in episode_seeds("arena", "train", count, 0, 0):
        actions, c2w = ground_truth_episode(level, policy, ticks, prompt_config)
        out.append((np.stack([a.to_array() for a in actions]), c2w))
    return out


def recorded_camera_episodes(paths: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(actions [T, 8], camera-to-world [T + 1, 4, 4]) of every episode with poses in the recordings under `paths`
    (read from their tick logs; the frames are not loaded)."""
    from engine.recording import Recording
    from worldmodel.data import find_recordings

    out = []
    for path in find_recordings(paths):
        rec = Recording(path)
        n = len(rec)
        poses = [row["cam_to_world"] for row in rec.rows[:n]]
        if n == 0 or any(p is None for p in poses):
            continue
        c2w, actions = np.asarray(poses, np.float64), rec.actions_array()
        bounds = sorted({0, *np.flatnonzero(rec.resets_array()).tolist(), n})
        out += [(actions[a + 1:b], c2w[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= 2]
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m worldmodel.motion --checkpoint M --out DIR [--data REC ...]: fit the camera rules (info.motion) on
    the first 3/4 of the episodes, report their error on the last 1/4, refit on all, and write the model to DIR with
    info.motion and info.dream.camera = action (weights unchanged)."""
    import sys

    from engine.cli import Parser
    from worldmodel.checkpoint import CheckpointError, load_model, save_loaded

    p = Parser(prog="python -m worldmodel.motion", description=main.__doc__)
    p.add_argument("--checkpoint", required=True, help="model directory")
    p.add_argument("--out", required=True, help="where to write the model with its fitted camera rules")
    p.add_argument("--data", nargs="*", default=None, help="recordings (default: the arena's training episodes)")
    p.add_argument("--episodes", type=int, default=16)
    p.add_argument("--ticks", type=int, default=400)
    args = p.parse_args(argv)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.data:
        episodes = recorded_camera_episodes(args.data)
        source = f"recordings {args.data}"
    elif model.settings.prompt_world == "arena":
        episodes = arena_episodes(dict(model.settings.prompt_config or {}), args.episodes, args.ticks)
        source = f"arena train split, {args.episodes} episodes x {args.ticks} ticks"
    else:
        print("error: this model was not trained on the arena; give its recordings with --data", file=sys.stderr)
        return 2
    if len(episodes) < 4:
        print(f"error: {len(episodes)} episode(s); the fit needs at least 4 (3/4 to fit, 1/4 to check)", file=sys.stderr)
        return 2
    cut = len(episodes) * 3 // 4
    check = held_out_error(fit_motion(episodes[:cut]), episodes[cut:])
    rules = fit_motion(episodes)
    info = dict(model.info)
    info["motion"] = {**rules.to_info(), "held_out": check}
    info["dream"] = {**(info.get("dream") or {}), "camera": "action"}
    save_loaded(args.out, model, info)
    print(f"fitted on {source}: {rules.to_info()}\nheld-out mean abs error per tick: {check}\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
