"""The engine: worlds, actions, the fixed-time-step loop, input, window, recording and replay.

It knows nothing of neural networks; `worldmodel` and `splat` plug in through the world registry.
"""

from engine.action import ACTION_DIM, ACTION_NAMES, KEYS, NOOP, Action, ActionError, encode_actions
from engine.script import register_policy
from engine.world import (
    Observation,
    ObservationError,
    World,
    UntrustedWorldError,
    WorldNotFoundError,
    available_worlds,
    check_world_name,
    make_world,
    make_world_from_file,
    register_world,
    validate_observation,
)

# Built-in worlds are registered lazily by 'module:attr' so importing the engine stays cheap.
register_world("plane", "engine.plane:PlaneWorld", "a checkered plane under a sky (tiny synthetic world, no GL)")
register_world("replay", "engine.replay:ReplayWorld", "plays back a recording directory (config: path)")
register_world("arena", "engine.arena:ArenaWorld", "the procedural ground-truth 3D arena (moderngl)")
register_policy("explore", "engine.arena.policies:ExplorePolicy")  # arena exploration for training data
register_policy("arena_random", "engine.arena.policies:RandomPolicy")

try:  # gymnasium ids (dreamwalk/Arena-v0, ...) exist as soon as the engine is imported
    from engine.gymenv import register_envs

    register_envs()
except ImportError:  # gymnasium is optional for the engine's core
    pass

__all__ = [
    "ACTION_DIM",
    "ACTION_NAMES",
    "KEYS",
    "NOOP",
    "Action",
    "ActionError",
    "Observation",
    "ObservationError",
    "World",
    "UntrustedWorldError",
    "WorldNotFoundError",
    "available_worlds",
    "check_world_name",
    "encode_actions",
    "make_world",
    "make_world_from_file",
    "register_world",
    "validate_observation",
]
