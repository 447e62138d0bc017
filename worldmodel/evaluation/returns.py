"""Returns found in a recorded camera path: the ticks where the camera comes back to a view it had left.

The arena's revisit walks are planned to leave a place and come back; a recording of one's own game is not,
but wherever its camera comes back near an earlier pose the truth of that view is known, and a dream that
kept it in its scene memory can show it again. A tick r returns to an earlier tick a when

- the camera is near pose a again: within NEAR_M metres and its rotation within NEAR_DEG degrees (the view
  direction, pitch included: most of the two frames show the same surfaces);
- it had gone away from pose a in between: at some tick between a and r it was more than AWAY_M metres from
  there or turned more than AWAY_DEG degrees (a camera that never left is not a return: standing still, or a
  slow drift, stays in view);
- at least `min_gap` ticks passed since a (the evaluation passes the model's context window + 1, so view a
  has left the dynamics' context and only the scene memory can bring it back).

Each return is counted once: consecutive ticks that all come back near earlier poses are one return, at its
first tick (standing still at the start after a walk out and back, or turning on past 360°, is the same return
continued); the camera must come back into the neighbourhood of an earlier pose again for the next one.
The thresholds: 0.5 m and 20° keep most of a 90°-wide view the same pixels (the arena's revisit probes come back
to within a few centimetres), 1.5 m and 60° are three times as far, enough that the view was really left
(a third of a 90° view changes by 60°); sideways steps and small glances do not count as leaving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_M, NEAR_DEG = 0.5, 20.0
AWAY_M, AWAY_DEG = 1.5, 60.0


@dataclass(frozen=True)
class Return:
    """Tick `tick` comes back near the pose of tick `earlier`."""

    earlier: int
    tick: int


def rotation_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The angle of the rotation between camera-to-world matrices (any broadcastable [..., 4, 4]), degrees."""
    trace = np.einsum("...ij,...ij->...", a[..., :3, :3], b[..., :3, :3])  # trace(Ra^T Rb)
    return np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))


def _near(c2w: np.ndarray, pose: np.ndarray, metres: float, degrees: float) -> np.ndarray:
    """Which of c2w [N, 4, 4] are within `metres` and `degrees` of one pose [4, 4]."""
    return (np.linalg.norm(c2w[:, :3, 3] - pose[:3, 3], axis=-1) <= metres) & (rotation_deg(c2w, pose) <= degrees)


def _first_departures(c2w: np.ndarray, away_m: float, away_deg: float) -> np.ndarray:
    """For each tick a, the first later tick at which the camera is away from pose a (len(c2w) if never)."""
    T = len(c2w)
    out = np.full(T, T)
    for a in range(T - 1):
        away = np.flatnonzero(~_near(c2w[a + 1:], c2w[a], away_m, away_deg))
        if away.size:
            out[a] = a + 1 + away[0]
    return out


def find_returns(c2w: np.ndarray, min_gap: int, first_tick: int = 0, near_m: float = NEAR_M,
                 near_deg: float = NEAR_DEG, away_m: float = AWAY_M, away_deg: float = AWAY_DEG) -> list[Return]:
    """The returns (module docstring) of a camera path c2w [T, 4, 4], in tick order, each at tick >= first_tick
    (the evaluation's first dreamed tick); `earlier` is the first tick of the pose it comes back to."""
    c2w = np.asarray(c2w, np.float64)
    departed = _first_departures(c2w, away_m, away_deg)
    out, returning = [], False
    for r in range(min_gap, len(c2w)):
        a = np.arange(r - min_gap + 1)
        hits = a[(departed[a] < r) & _near(c2w[a], c2w[r], near_m, near_deg)]
        if hits.size and not returning and r >= first_tick:
            out.append(Return(int(hits[0]), r))
        returning = bool(hits.size)
    return out
