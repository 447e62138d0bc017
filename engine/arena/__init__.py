"""The procedural ground-truth arena: seeded levels, player physics, moving objects, moderngl rendering.

`ArenaWorld` is registered as the engine world "arena"; `POLICIES` drive it for data collection and
`splits` fixes which seeds are train, validation and test.
"""

from engine.arena.config import ArenaConfig, ArenaConfigError, load_preset
from engine.arena.policies import POLICIES, ExplorePolicy, RandomPolicy
from engine.arena.world import ArenaSim, ArenaWorld, intrinsics

__all__ = ["POLICIES", "ArenaConfig", "ArenaConfigError", "ArenaSim", "ArenaWorld", "ExplorePolicy", "RandomPolicy",
           "intrinsics", "load_preset"]
