"""Fixed-time-step scheduling: the accumulator that decides how many ticks are due each frame.

The display may refresh at any rate; the world advances in whole ticks of `dt` seconds. Each frame
the elapsed wall time is added to an accumulator and whole ticks are taken out of it. When the world
is slower than real time the backlog would grow without end (the "spiral of death"), so at most
`max_catchup` ticks run per frame and the rest of the backlog is dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FixedStep:
    """Accumulator for a fixed tick rate. Times are seconds from any monotonic clock."""

    tick_rate: float = 20.0
    max_catchup: int = 4
    accumulator: float = 0.0
    dropped: int = 0  # ticks discarded because the backlog exceeded `max_catchup`
    _last: float | None = None

    def __post_init__(self) -> None:
        if not self.tick_rate > 0:
            raise ValueError(f"tick_rate must be > 0 ticks/s, got {self.tick_rate}")
        if self.max_catchup < 1:
            raise ValueError(f"max_catchup must be >= 1, got {self.max_catchup}")

    @property
    def dt(self) -> float:
        return 1.0 / self.tick_rate

    def advance(self, now: float) -> int:
        """Account for time up to `now`; return how many ticks to run this frame (0..max_catchup)."""
        if self._last is None:
            # The first frame runs one tick at once, so the world is visible without waiting dt.
            self._last = now
            return 1
        self.accumulator += max(0.0, now - self._last)
        self._last = now
        due = int(self.accumulator / self.dt + 1e-9)
        if due > self.max_catchup:
            self.dropped += due - self.max_catchup
            self.accumulator -= (due - self.max_catchup) * self.dt
            due = self.max_catchup
        self.accumulator -= due * self.dt
        return due

    def pause(self) -> None:
        """Forget elapsed time (paused time must not turn into a burst of ticks on resume)."""
        self._last = None
        self.accumulator = 0.0

    def time_to_next(self, now: float) -> float:
        """Seconds until the next tick is due (for sleeping in paced headless runs)."""
        if self._last is None:
            return 0.0
        return max(0.0, self.dt - self.accumulator - (now - self._last))
