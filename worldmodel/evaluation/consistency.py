"""Is the dream consistent with itself? Scores that need no truth of the unseen:

- `physics_agreement`: the camera stops where the picture shows a wall and walks where it shows open space. Per
  moving tick (a move key held whose direction lies in the view, on the ground), the picture is the frame shown
  before the move, its depth lifted into the world; the "corridor" is what the player's body (half-width `radius`,
  from `knee` above the floor to `head` above the eye: worldmodel.motion.MotionModel) would sweep. A tick agrees when
  the camera was blocked (moved less than half its step) and the shown geometry in the corridor is within `margin`
  of the body, or when it moved and did not pass through shown geometry in the corridor of its own displacement.
- `dream_revisit`: the dream's view at a pose against its own earlier view at the same pose (PSNR), for pairs of
  ticks whose dreamed cameras agree (within 5 cm and 1°): a dreamed place should look the same when you come back.
- `inside_share`: the share of ticks whose camera is inside the level's bounds.

Probes for them (`revisit_probe_actions`, `long_play_actions`) are action lists: turning and walking out into space
the first view never showed and back, and minutes of walking that push into walls and come back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.action import ACTION_NAMES, NOOP, Action
from engine.image import psnr
from worldmodel.evaluation.returns import rotation_deg
from worldmodel.pose import decompose

_I = {name: i for i, name in enumerate(ACTION_NAMES)}
BLOCKED_SHARE = 0.5  # a moving tick is "blocked" when the camera moved less than this share of its step
MARGIN_M = 0.25  # a stop agrees with the picture when shown geometry is this close to the body (depth noise, FOV edge)
THROUGH_TOLERANCE_M = 0.05  # a move passes "through" the picture when it goes this much past shown geometry
VIEW_CONE_DEG = 30.0  # only moves within this angle of the camera's forward can be judged from the picture
MAX_POINT_DEPTH_M = 30.0  # depths beyond this (the sky) are no obstacle
MIN_POINTS = 5  # the k-th nearest point in the corridor counts as the obstacle (one stray depth does not)
REVISIT_POSE_M, REVISIT_POSE_DEG = 0.05, 1.0  # two dreamed cameras at "the same pose"


@dataclass
class PhysicsAgreement:
    """Counts of judged ticks; `share` = agreeing / judged (NaN when none were judged)."""

    ticks: int = 0  # judged moving ticks
    agree: int = 0
    blocked: int = 0  # of them, ticks the camera was blocked
    blocked_by_nothing: int = 0  # blocked, with no shown geometry within the margin: an invisible wall
    through: int = 0  # moved through shown geometry

    @property
    def share(self) -> float:
        return self.agree / self.ticks if self.ticks else float("nan")

    def __add__(self, other: "PhysicsAgreement") -> "PhysicsAgreement":
        return PhysicsAgreement(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def to_json(self) -> dict[str, float | int | None]:
        share = self.share
        return {**asdict(self), "share": None if np.isnan(share) else round(share, 4)}


def lift_depth(depth: np.ndarray, c2w: np.ndarray, K: np.ndarray, stride: int = 1) -> np.ndarray:
    """World points [N, 3] of a depth image [H, W] (metres along the camera's z) seen from c2w [4, 4] with K [3, 3],
    every `stride`-th pixel; depths beyond MAX_POINT_DEPTH_M (the sky) are left out."""
    from splat.camera import lift_pixels

    H, W = depth.shape
    v, u = np.mgrid[0:H:stride, 0:W:stride]
    z = depth[::stride, ::stride].astype(np.float64)
    keep = np.isfinite(z) & (z > 0) & (z < MAX_POINT_DEPTH_M)
    return lift_pixels(v[keep], u[keep], z[keep], K, c2w).astype(np.float64)


def corridor_clearance(points: np.ndarray, eye: np.ndarray, direction: np.ndarray, radius: float, eye_height: float,
                       knee: float, head: float) -> float:
    """How far (metres) the body can move from `eye` along the unit xz `direction` [2] before its front face meets the
    MIN_POINTS-th nearest of `points` [N, 3] in its corridor (inf when fewer lie there)."""
    feet = eye[1] - eye_height
    body = points[(points[:, 1] > feet + knee) & (points[:, 1] < eye[1] + head)]
    rel = body[:, [0, 2]] - eye[[0, 2]]
    s = rel @ direction
    lateral = np.abs(rel @ np.array([-direction[1], direction[0]]))
    ahead = np.sort(s[(s > 0) & (lateral < radius)])
    return float(ahead[MIN_POINTS - 1] - radius) if len(ahead) >= MIN_POINTS else float("inf")


def physics_agreement(depth: np.ndarray, c2w: np.ndarray, actions: np.ndarray, K: np.ndarray, rules) -> PhysicsAgreement:
    """Module docstring. depth [T+1, H, W] the shown frames' depth, c2w [T+1, 4, 4] their cameras, actions [T+1, 8]
    (row t led into frame t), K [3, 3], rules a worldmodel.motion.MotionModel (step lengths and the body)."""
    out = PhysicsAgreement()
    if rules.radius <= 0:
        return out
    for t in range(1, len(c2w)):
        a = actions[t]
        wish_cam = np.array([a[_I["right"]] - a[_I["left"]], a[_I["forward"]] - a[_I["back"]]])
        if not np.any(wish_cam) or abs(c2w[t][1, 3] - c2w[t - 1][1, 3]) > 0.01 or a[_I["jump"]] > 0.5:
            continue  # no move key, or airborne: nothing to judge
        if np.degrees(np.arctan2(abs(wish_cam[0]), wish_cam[1])) > VIEW_CONE_DEG:
            continue  # a move the picture cannot show (sideways, backwards)
        eye0, _, _ = decompose(c2w[t - 1][None])
        _, yaw1, _ = decompose(c2w[t][None])
        eye0, y1 = eye0[0], np.radians(float(yaw1[0]))
        fwd, right = np.array([np.sin(y1), -np.cos(y1)]), np.array([np.cos(y1), np.sin(y1)])
        wish = fwd * wish_cam[1] + right * wish_cam[0]
        wish /= np.linalg.norm(wish)
        step = rules.sprint if a[_I["sprint"]] > 0.5 else rules.walk
        moved = c2w[t][[0, 2], 3] - c2w[t - 1][[0, 2], 3]
        dist = float(np.linalg.norm(moved))
        points = lift_depth(depth[t - 1], c2w[t - 1], K)
        body = (rules.radius, rules.eye_height, rules.knee, rules.head)
        out.ticks += 1
        if dist < BLOCKED_SHARE * step:
            out.blocked += 1
            if corridor_clearance(points, eye0, wish, *body) <= MARGIN_M:
                out.agree += 1
            else:
                out.blocked_by_nothing += 1
        elif corridor_clearance(points, eye0, moved / dist, *body) < dist - THROUGH_TOLERANCE_M:
            out.through += 1
        else:
            out.agree += 1
    return out


def dream_revisit(frames: np.ndarray, c2w: np.ndarray, pairs: list[tuple[int, int]]) -> dict[str, float | int | None]:
    """PSNR of frames[t2] against frames[t1] for each (t1, t2) of `pairs` whose cameras c2w agree (REVISIT_POSE_M and
    REVISIT_POSE_DEG); {psnr_db: the mean, pairs: how many agreed, pairs_off_pose: how many did not}."""
    scores, off = [], 0
    for t1, t2 in pairs:
        near = np.linalg.norm(c2w[t1][:3, 3] - c2w[t2][:3, 3]) < REVISIT_POSE_M
        if near and rotation_deg(c2w[t1], c2w[t2]) < REVISIT_POSE_DEG:
            scores.append(float(psnr(frames[t2], frames[t1])))
        else:
            off += 1
    return {"psnr_db": float(np.mean(scores)) if scores else None, "pairs": len(scores), "pairs_off_pose": off}


def inside_share(c2w: np.ndarray, size_m: tuple[float, float]) -> float:
    """The share of cameras c2w [T, 4, 4] whose x, z lie inside [0, size_m[0]] x [0, size_m[1]] (a level's bounds)."""
    x, z = c2w[:, 0, 3], c2w[:, 2, 3]
    return float(np.mean((x >= 0) & (x <= size_m[0]) & (z >= 0) & (z <= size_m[1])))


def _turn(deg_per_tick: float, ticks: int) -> list[Action]:
    return [Action(yaw=deg_per_tick) for _ in range(ticks)]


def revisit_probe_actions() -> tuple[list[Action], list[tuple[int, int]], list[Action], list[tuple[int, int]]]:
    """Two probes into space the first view does not show, and the tick pairs where each is back at an earlier pose:
    a turn (180° right at 6°/tick, back left, right again: tick t and 60 + t face the same way) and a walk (20 ticks
    forward, 20 back, 20 forward: t and 40 + t at one place when nothing stopped it). Ticks count from the real
    first view (tick 0)."""
    turn = _turn(6.0, 30) + _turn(-6.0, 30) + _turn(6.0, 30)
    walk = [Action(forward=True)] * 20 + [Action(back=True)] * 20 + [Action(forward=True)] * 20
    return turn, [(t, 60 + t) for t in range(1, 31)], walk, [(t, 40 + t) for t in range(1, 21)]


def long_play_actions(ticks: int) -> list[Action]:
    """A scripted long play of `ticks` ticks: push forward 10 s (into whatever wall is ahead, and on against it),
    turn round in 1.5 s, walk 10 s back, turn a quarter, look around, and again."""
    cycle = ([Action(forward=True)] * 200 + _turn(6.0, 30) + [Action(forward=True)] * 200 + _turn(-6.0, 15)
             + _turn(4.0, 20) + _turn(-4.0, 20) + [NOOP] * 15)
    return (cycle * (ticks // len(cycle) + 1))[:ticks]


def consistency_summary(parts: dict[str, Any], wall: dict[str, Any] | None) -> dict[str, Any]:
    """The self_consistency block: the dream revisit's headline (the turn probe's pairs whose first view the dream
    invented), physics agreement pooled over the dream's scenarios (the truth's beside it), the wall stop error at the
    walls the real first view showed."""
    out: dict[str, Any] = {}
    revisit = parts.get("dream_revisit")
    if revisit:
        out["dream_revisit_db"] = revisit["turn"]["invented"]["psnr_db"]
        out["dream_revisit"] = revisit
    physics = parts.get("physics_agreement", {})
    if physics:
        pooled = {who: PhysicsAgreement() for who in ("dream", "truth")}
        for name, counts in physics.items():
            pooled["truth" if name.startswith("truth_") else "dream"] += PhysicsAgreement(
                **{k: v for k, v in counts.items() if k != "share"})
        out["physics_agreement"] = pooled["dream"].share if pooled["dream"].ticks else None
        out["physics_agreement_truth"] = pooled["truth"].share if pooled["truth"].ticks else None
        out["physics"] = {"dream": pooled["dream"].to_json(), "truth": pooled["truth"].to_json(), "per_scenario": physics}
    if "long_play" in parts:
        out["long_play"] = parts["long_play"]
    if wall:
        shown = wall.get("memory_on", wall)
        out["wall_stop_error_m_seen_walls"] = shown.get("stop_error_m_wall_seen")
        out["walls_seen"] = int(sum(wall.get("wall_in_first_view", [])))
    return out
