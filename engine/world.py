"""The `World` interface every world implements, its `Observation`, and the registry of worlds by name.

The engine drives any `World` — the ground-truth arena, the neural dream, a replay, a user's own
game — through three calls: `reset(seed)`, `step(action)`, `close()`. Packages register their worlds
under a name (what `play.py --world NAME` takes), so the engine never imports them:

    from engine import register_world
    register_world("mygame", "mypackage.game:MyGameWorld")

Names are also found through the ``dreamwalk.worlds`` entry-point group of installed packages. A
``module:attribute`` string works where the person running the program names the world: in Python
(`make_world`) and on the command line. A name read from a file people share (a recording's meta.yaml,
a model.yaml) resolves only to registered and installed worlds (`make_world_from_file`,
`check_world_name`): importing a module a file names would run code from that file.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.metadata
import inspect
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Union

import numpy as np

from engine.action import Action
from engine.cli import type_problem
from engine.files import brief

ENTRY_POINT_GROUP = "dreamwalk.worlds"


class ObservationError(ValueError):
    """A World returned an observation of the wrong shape, dtype or content."""


class WorldNotFoundError(KeyError):
    """No world is registered under the requested name."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


class UntrustedWorldError(WorldNotFoundError):
    """A data file names a world that is not registered (e.g. 'module:attr'): refused, as importing it could run code."""


@dataclass
class Observation:
    """What a world shows after a reset or a step.

    rgb:          [H, W, 3] uint8
    depth:        [H, W] float32, metres along the camera's z axis, or None when the world has no depth
    cam_to_world: [4, 4] float64, OpenCV camera (x right, y down, z forward) to world (+y up), or None
    K:            [3, 3] float64 pinhole intrinsics in pixels, or None
    tick:         ticks since the last reset (0 for the reset observation)
    info:         JSON-able extras (world-specific)
    dynamic_mask: [H, W] bool, True where something that moves on its own is drawn, or None
    policy_view:  what a policy sees when it is not what is shown (the split view: the ground truth alone,
                  with its depth and pose), or None (the policy sees this observation); not recorded
    """

    rgb: np.ndarray
    depth: np.ndarray | None = None
    cam_to_world: np.ndarray | None = None
    K: np.ndarray | None = None
    tick: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    dynamic_mask: np.ndarray | None = None
    policy_view: "Observation | None" = None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)"""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])


def validate_observation(obs: Any, world: str, tick: int | str) -> Observation:
    """Check an observation from a (possibly user-written) world; raise a clear error naming the world and tick."""
    where = f"world {world!r} at tick {tick}"
    if not isinstance(obs, Observation):
        raise ObservationError(f"{where} returned {type(obs).__name__}, expected engine.Observation")
    rgb = obs.rgb
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        desc = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ObservationError(f"{where}: rgb must be a uint8 array [H, W, 3], got {desc}")
    h, w = rgb.shape[:2]
    if h < 1 or w < 1:
        raise ObservationError(f"{where}: rgb is empty {rgb.shape}")
    if obs.depth is not None:
        d = obs.depth
        if not isinstance(d, np.ndarray) or d.shape != (h, w) or d.dtype != np.float32:
            desc = f"{d.dtype} {d.shape}" if isinstance(d, np.ndarray) else type(d).__name__
            raise ObservationError(f"{where}: depth must be float32 [{h}, {w}] metres or None, got {desc}")
    if obs.dynamic_mask is not None:
        m = obs.dynamic_mask
        if not isinstance(m, np.ndarray) or m.shape != (h, w) or m.dtype != np.bool_:
            desc = f"{m.dtype} {m.shape}" if isinstance(m, np.ndarray) else type(m).__name__
            raise ObservationError(f"{where}: dynamic_mask must be bool [{h}, {w}] or None, got {desc}")
    for name, shape in (("cam_to_world", (4, 4)), ("K", (3, 3))):
        v = getattr(obs, name)
        if v is None:
            continue
        if not isinstance(v, np.ndarray) or v.shape != shape:
            desc = f"{v.shape}" if isinstance(v, np.ndarray) else type(v).__name__
            raise ObservationError(f"{where}: {name} must be an array {list(shape)} or None, got {desc}")
        if not np.all(np.isfinite(v)):
            raise ObservationError(f"{where}: {name} contains NaN or inf")
    if not isinstance(obs.info, dict):
        raise ObservationError(f"{where}: info must be a dict, got {type(obs.info).__name__}")
    return obs


class World(ABC):
    """A world the engine can play, record, replay and train on.

    Subclasses set `name` (the registry name) and `deterministic` (same seed + actions give the same
    frames, which `replay --verify` checks bit-exactly). `config` is a JSON/YAML-able dict from which
    `make_world(name, **config)` rebuilds an identical world; recordings store it.
    """

    name: ClassVar[str] = "world"
    deterministic: ClassVar[bool] = False
    # The world's own commands: name -> (default key, one line saying what it does). The window binds each
    # default key (pygame's key name) while this world runs, unless the keymap binds the command itself, lists
    # it in the help overlay (F1), and on the key calls `command(name)` -> the HUD message (None: cannot act now).
    # Commands are recorded with the tick they happened on, and replayed.
    commands: ClassVar[dict[str, tuple[str, str]]] = {}

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this world (stored in recordings)."""
        return {}

    @abstractmethod
    def reset(self, seed: int) -> Observation:
        """Start a new episode from `seed`; returns the tick-0 observation."""

    @abstractmethod
    def step(self, action: Action) -> Observation:
        """Advance one tick with `action`; returns the new observation."""

    def close(self) -> None:
        """Release windows, GL contexts, files. Safe to call twice."""

    def __enter__(self) -> "World":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- registry ---------------------------------------------------------------------------------------

WorldFactory = Union[Callable[..., World], str]


@dataclass
class _Entry:
    factory: WorldFactory
    description: str


_REGISTRY: dict[str, _Entry] = {}


def register_world(name: str, factory: WorldFactory, description: str = "", overwrite: bool = False) -> None:
    """Register a world class/factory (or a lazy 'module:attr' string) under `name`."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a world name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite and _REGISTRY[name].factory is not factory:
        raise ValueError(f"a world named {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = _Entry(factory, description)


def _resolve(target: str) -> Callable[..., World]:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise WorldNotFoundError(f"{target!r} is not 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise WorldNotFoundError(f"cannot import module {module_name!r} for world {target!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError as e:
        raise WorldNotFoundError(f"module {module_name!r} has no attribute {attr!r}") from e


def _entry_points() -> dict[str, str]:
    try:
        return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    except Exception:  # a broken installed distribution must not break the engine
        return {}


def available_worlds() -> dict[str, str]:
    """Names of all known worlds -> one-line descriptions."""
    names = {n: e.description for n, e in _REGISTRY.items()}
    for n, target in _entry_points().items():
        names.setdefault(n, f"(from an installed package: {target})")
    return dict(sorted(names.items()))


# While a world named by a data file is being built, the names its config holds (a dream's prompt world)
# come from that file too: (source, hint) of the file, or None when the caller named the world itself.
_UNTRUSTED: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("dreamwalk_world_source",
                                                                                       default=None)


def world_factory(name: str, source: str | None = None, hint: str | None = None) -> Callable[..., World]:
    """The class or factory registered under `name`.

    `source`: the file `name` was read from. Then (and while a world built by `make_world_from_file` is
    being constructed) only registered names and installed entry points resolve; a 'module:attr' name is
    refused with UntrustedWorldError naming the file, the world and `hint` (what the user can do instead).
    Without a source the name comes from the person running the program, and 'module:attr' imports.
    """
    if source is None and _UNTRUSTED.get() is not None:
        source, hint = _UNTRUSTED.get()
    if not isinstance(name, str) or not name:
        where = f"{source}: " if source else ""
        raise WorldNotFoundError(f"{where}a world name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        factory = _REGISTRY[name].factory
        return _resolve(factory) if isinstance(factory, str) else factory
    eps = _entry_points()
    if name in eps:
        return _resolve(eps[name])
    known = ", ".join(available_worlds()) or "none"
    if source is not None:
        raise UntrustedWorldError(
            f"{source} names the world {name!r}, which is not registered (known: {known}); a file may name only "
            f"registered worlds, since importing a module it names could run code. "
            + (hint or f"If you trust {source}, name the world yourself (on the command line or in Python)."))
    if ":" in name:
        return _resolve(name)
    raise WorldNotFoundError(f"no world named {name!r}; known worlds: {known} (or pass 'module:Class')")


def loop_tick_rate(name: str, config: dict[str, Any], tick_rate: float) -> dict[str, Any]:
    """`config` for a world that will run in a loop (play.py, a rollout) at `tick_rate` ticks/s: a world whose
    constructor takes `tick_rate` (the arena, the plane: its physics step is 1/tick_rate) gets the loop's rate, so
    one second of play is one second of the world; a config that names another rate is refused (ValueError)."""
    import inspect

    try:
        params = inspect.signature(world_factory(name)).parameters
    except (TypeError, ValueError):
        return dict(config)
    if "tick_rate" not in params:
        return dict(config)
    given = config.get("tick_rate")
    if given is not None and isinstance(given, (int, float)) and not isinstance(given, bool) and float(given) != float(tick_rate):
        raise ValueError(f"the world's tick_rate {given:g} (--set tick_rate) differs from the loop's --tick-rate "
                         f"{tick_rate:g}: the world would run at {float(tick_rate) / float(given):g}x real time. Give the "
                         f"rate once, as --tick-rate {given:g}")
    if given is not None and not isinstance(given, (int, float)) or isinstance(given, bool):
        return dict(config)  # not a number: the world names it
    return {**config, "tick_rate": float(tick_rate)}


def check_world_name(name: Any, source: str, hint: str | None = None) -> str:
    """Check a world name read from the data file `source` (see `world_factory`) without building the world."""
    world_factory(name, source, hint)
    return name


def check_config_types(name: str, factory: Callable[..., World], config: dict[str, Any]) -> None:
    """TypeError naming the key when a config value does not have the type the world's constructor annotates (a
    string where a bool belongs, 8.5 for an integer, NaN for a number): `--set memory=maybe` is refused, not read as
    true."""
    target = factory.__init__ if isinstance(factory, type) else factory
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [n for n, p in params.items() if n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in config if k not in known]
        if unknown:
            raise TypeError(f"world {name!r} has no setting {brief(unknown[0]) if len(unknown) == 1 else brief(unknown)}"
                            f"; its settings are {', '.join(known)}")
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 (annotations this check cannot resolve: the constructor checks its own)
        return
    for key, value in config.items():
        problem = type_problem(value, hints.get(key))
        if problem:
            raise TypeError(f"world {name!r}: {key} {problem}")


def _build(name: str, factory: Callable[..., World], config: dict[str, Any]) -> World:
    check_config_types(name, factory, config)
    try:
        world = factory(**config)
    except TypeError as e:
        raise TypeError(f"cannot build world {name!r} with config {sorted(config)}: {e}") from e
    if not isinstance(world, World):
        raise TypeError(f"world factory {name!r} returned {type(world).__name__}, not an engine.World")
    return world


def make_world(name: str, **config: Any) -> World:
    """Construct a world by registry name (or a 'module:attr' the caller chose) with keyword config.

    For a name and config read from a file, use `make_world_from_file`."""
    return _build(name, world_factory(name), config)


def make_world_from_file(name: Any, config: Any, source: str, hint: str | None = None) -> World:
    """Construct a world named by a data file (a recording's meta.yaml, ...): registered worlds only, also for
    any world name inside `config`; UntrustedWorldError (naming `source`, the world and `hint`) otherwise."""
    factory = world_factory(name, source, hint)
    if not isinstance(config, dict):
        raise TypeError(f"{source}: the config of world {name!r} must be a mapping, got {type(config).__name__}")
    token = _UNTRUSTED.set((source, hint or f"If you trust {source}, name the world yourself "
                                            "(on the command line or in Python)."))
    try:
        return _build(name, factory, config)
    finally:
        _UNTRUSTED.reset(token)
