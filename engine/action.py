"""The player's input for one tick, and its one tensor encoding.

An `Action` is what the engine hands a `World` each tick: which movement keys were held (or tapped)
during the tick, and how far the mouse turned the view, summed over the tick. Every consumer —
recordings, training data, the gymnasium env — uses the same flat float32 encoding:

    index  0        1     2     3      4     5       6           7
    name   forward  back  left  right  jump  sprint  yaw (deg)   pitch (deg)

Keys are 0.0 or 1.0. Yaw is positive when the view turns right, pitch positive when it looks up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, Sequence

import numpy as np

from engine.files import brief

# Order is the encoding: never reorder, only append (recordings store the names beside the vectors).
KEYS: tuple[str, ...] = ("forward", "back", "left", "right", "jump", "sprint")
LOOK: tuple[str, ...] = ("yaw", "pitch")
ACTION_NAMES: tuple[str, ...] = KEYS + LOOK
ACTION_DIM: int = len(ACTION_NAMES)

# A mouse flick is bounded by what a person can do in 1/20 s; larger values are almost surely a bug
# upstream (radians passed as degrees, an accumulator never cleared).
MAX_LOOK_DEG: float = 360.0


class ActionError(ValueError):
    """An action that cannot be used: NaN/inf, out of range, or a malformed encoding."""


@dataclass(frozen=True)
class Action:
    """Held keys plus the mouse-look delta accumulated over one tick (degrees)."""

    forward: bool = False
    back: bool = False
    left: bool = False
    right: bool = False
    jump: bool = False
    sprint: bool = False
    yaw: float = 0.0
    pitch: float = 0.0

    def __post_init__(self) -> None:
        for name in LOOK:
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
                raise ActionError(f"Action.{name} must be a number of degrees, got {value!r}")
            if not math.isfinite(float(value)):
                raise ActionError(
                    f"Action.{name} is {value}: look deltas must be finite degrees. "
                    "Check the policy or input device that produced this action."
                )
            if abs(float(value)) > MAX_LOOK_DEG:
                raise ActionError(
                    f"Action.{name} = {value} degrees in one tick is beyond ±{MAX_LOOK_DEG:g}; "
                    "were radians or an un-reset accumulator passed?"
                )
            object.__setattr__(self, name, float(value))
        for name in KEYS:
            value = getattr(self, name)
            # True/False (or 1/0): bool('no') and bool(nan) are True, so anything else would count as held.
            if isinstance(value, (bool, np.bool_)):
                held = bool(value)
            elif isinstance(value, (int, float, np.integer, np.floating)) and float(value) in (0.0, 1.0):
                held = float(value) == 1.0
            else:
                raise ActionError(f"Action.{name} must be True or False (held or not), got {value!r}")
            object.__setattr__(self, name, held)

    @property
    def held(self) -> tuple[str, ...]:
        """Names of the keys held during the tick, in encoding order."""
        return tuple(k for k in KEYS if getattr(self, k))

    @classmethod
    def from_keys(cls, keys: Iterable[str] = (), yaw: float = 0.0, pitch: float = 0.0) -> "Action":
        """Build an action from key names; an unknown name is an error that lists the valid ones."""
        keys = list(keys)
        unknown = [k for k in keys if k not in KEYS]
        if unknown:
            raise ActionError(f"unknown action key(s) {brief(unknown)}; valid keys are {list(KEYS)}")
        return cls(**{k: True for k in keys}, yaw=yaw, pitch=pitch)

    # -- the one tensor encoding ----------------------------------------------------------------

    def to_array(self) -> np.ndarray:
        """Encode as float32 [ACTION_DIM]."""
        return np.array([float(getattr(self, n)) for n in ACTION_NAMES], dtype=np.float32)

    @classmethod
    def from_array(cls, vector: Sequence[float] | np.ndarray) -> "Action":
        """Decode float [ACTION_DIM]; keys are held when their value is above 0.5."""
        arr = np.asarray(vector, dtype=np.float64).reshape(-1)
        if arr.shape != (ACTION_DIM,):
            raise ActionError(f"an action vector has {ACTION_DIM} values {ACTION_NAMES}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = [ACTION_NAMES[i] for i in np.flatnonzero(~np.isfinite(arr))]
            raise ActionError(f"action vector has NaN/inf in {bad}")
        keys = {k: bool(arr[i] > 0.5) for i, k in enumerate(KEYS)}
        return cls(**keys, yaw=float(arr[len(KEYS)]), pitch=float(arr[len(KEYS) + 1]))

    # -- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-able dict: held key names and the look delta."""
        return {"keys": list(self.held), "yaw": self.yaw, "pitch": self.pitch}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Action":
        """Inverse of `to_json`; unknown fields are an error (a typo would otherwise be ignored)."""
        if not isinstance(data, dict):
            raise ActionError(f"an action in JSON is an object like {{'keys': [], 'yaw': 0, 'pitch': 0}}, got {data!r}")
        extra = set(data) - {"keys", "yaw", "pitch"}
        if extra:
            raise ActionError(f"unknown action field(s) {brief(sorted(extra, key=str))}; expected keys, yaw, pitch")
        return cls.from_keys(data.get("keys", []), yaw=data.get("yaw", 0.0), pitch=data.get("pitch", 0.0))


NOOP = Action()


def encode_actions(actions: Iterable[Action]) -> np.ndarray:
    """Stack actions into float32 [T, ACTION_DIM]."""
    rows = [a.to_array() for a in actions]
    return np.stack(rows) if rows else np.zeros((0, ACTION_DIM), np.float32)


assert tuple(f.name for f in fields(Action)) == ACTION_NAMES, "Action fields must match the encoding"


class ActionLog:
    """The actions of an episode so far, as float64 rows of ACTION_NAMES: what a recording started mid-episode stores
    as its prefix. Memory stays bounded however long the episode runs: rows past the first SPILL_ROWS go to an
    anonymous temporary file, SPILL_ROWS at a time (64 bytes a tick; Action objects took ~230 each)."""

    SPILL_ROWS = 1 << 16  # rows kept in memory (4 MiB); full blocks are appended to the temporary file

    def __init__(self) -> None:
        self._rows = np.empty((1024, ACTION_DIM), np.float64)
        self._n = 0  # rows in memory
        self._spilled = 0  # rows in the file
        self._file = None

    def append(self, action: "Action") -> None:
        if self._n == len(self._rows):
            if len(self._rows) < self.SPILL_ROWS:
                self._rows = np.concatenate([self._rows, np.empty_like(self._rows)])
            else:
                self._spill()
        self._rows[self._n] = [float(getattr(action, n)) for n in ACTION_NAMES]
        self._n += 1

    def _spill(self) -> None:
        import tempfile

        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="dreamwalk-actions-")  # gone when closed or the process ends
        self._file.write(self._rows[: self._n].tobytes())
        self._spilled += self._n
        self._n = 0

    def __len__(self) -> int:
        return self._spilled + self._n

    def array(self) -> np.ndarray:
        """The rows so far [len, ACTION_DIM] float64 (exact look deltas, unlike the float32 to_array), a copy."""
        head = np.empty((0, ACTION_DIM), np.float64)
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            head = np.frombuffer(self._file.read(self._spilled * ACTION_DIM * 8), np.float64).reshape(-1, ACTION_DIM)
            self._file.seek(0, 2)
        return np.concatenate([head, self._rows[: self._n]])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
