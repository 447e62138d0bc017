"""How a model dreams: the settings in model.yaml's `info` that the dream reads at run time, typed and checked once.

model.yaml `info` holds two kinds of keys:
- settings (SETTING_KEYS): the prompt world and its config, the sampler's context noise, the camera and its fitted
  rules, the scene memory and memory first. `DreamSettings.from_info` turns them into one frozen value, with one
  clear error per bad key, when the model is loaded (worldmodel.checkpoint.load_model: `LoadedModel.settings`).
- provenance (PROVENANCE_KEYS, and `chosen_by` inside a settings block): what the model was trained on and how its
  settings were chosen. Nothing reads them at run time; the model card cites them.

A caller's own choices (DreamWorld's keyword arguments, `play.py --set KEY=VALUE`) go through
`DreamSettings.choose`, checked the same way, so each setting has one way in and one error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Mapping

from engine.files import brief
from worldmodel.motion import MotionModel

SETTING_KEYS = ("prompt_world", "prompt_config", "render_size", "sampling", "dream", "motion", "memory")
PROVENANCE_KEYS = ("stage", "step", "frames", "episodes", "data", "has_pose", "time", "fine_tune", "pose_refit",
                   "stages", "decoder_fine_tune", "adversarial", "upsampler")
NOTE = "chosen_by"  # inside a settings block: how it was chosen (provenance)
CAMERAS = ("model", "action")  # the ego-motion head's prediction, or the fitted camera rules with collisions


class SettingsError(ValueError):
    """A dream setting that is unknown or out of range; the message names it and what it may be."""


def check_trust_gate(gate: Any, where: str = "memory_first_trust") -> tuple[float, float] | None:
    """A memory-first trust gate (worldmodel.tick.memory_first_frame): None, or [lo, hi] with 0 <= lo < hi <= 1."""
    if gate is None:
        return None
    if not (isinstance(gate, (list, tuple)) and len(gate) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in gate)
            and 0.0 <= gate[0] < gate[1] <= 1.0):
        raise SettingsError(f"{where} must be [lo, hi] with 0 <= lo < hi <= 1 (the trust from which the memory "
                            f"is shown, fully from hi), got {brief(gate)}")
    return float(gate[0]), float(gate[1])


def check_memory_settings(settings: Any, where: str) -> dict[str, Any]:
    """Scene-memory settings: a mapping of splat.MemoryConfig fields (not width/height: the model's frame size sets
    those), and in model.yaml an optional `chosen_by` note, which is dropped. SettingsError naming the bad key."""
    if settings is None:
        return {}
    from splat import MemoryConfig
    from worldmodel.config import ConfigError, _build

    allowed = sorted(f.name for f in fields(MemoryConfig) if f.name not in ("width", "height"))
    if not isinstance(settings, Mapping):
        raise SettingsError(f"{where} must be a mapping of scene-memory settings, got {brief(settings)}")
    unknown = sorted(set(settings) - set(allowed) - {NOTE}, key=str)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {unknown}; the scene-memory settings are {allowed} (and {NOTE})")
    values = {k: v for k, v in settings.items() if k != NOTE}
    try:  # the project's strict config loader checks the types (a YAML true is not a 1), then MemoryConfig its ranges
        _build(MemoryConfig, values, where, None)
    except (ConfigError, ValueError) as e:
        raise SettingsError(f"{where}: {e}") from None
    return values


def _block(info: Mapping[str, Any], key: str, keys: tuple[str, ...], where: str) -> dict[str, Any]:
    """info[key] as a mapping holding only `keys` (and a chosen_by note); {} when absent."""
    block = info.get(key) or {}
    if not isinstance(block, Mapping) or set(block) - set(keys) - {NOTE}:
        raise SettingsError(f"{where}info.{key} must be a mapping with the keys {', '.join(sorted((*keys, NOTE)))}; "
                            f"got {brief(block)}")
    return dict(block)


def _flag(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SettingsError(f"{key} must be true or false, got {brief(value)}")
    return value


def _context_noise(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise SettingsError(f"{key} must be a number in [0, 1), got {brief(value)}")
    return float(value)


def _motion(value: Any, where: str) -> MotionModel | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for k, v in value.items() if k != "held_out"):
        raise SettingsError(f"{where}info.motion must be a mapping of numbers (worldmodel.motion.MotionModel), "
                            f"got {brief(value)}")
    try:
        return MotionModel.from_info(dict(value))
    except ValueError as e:
        raise SettingsError(f"{where}{e}") from None


@dataclass(frozen=True)
class DreamSettings:
    """How a model dreams. The defaults are a model that says nothing: the arena as its prompt, clean context, the
    ego-motion head's camera, no scene memory."""

    prompt_world: str = "arena"  # the world episodes start from (a registered name; dream.prompt_world_name checks it)
    prompt_config: Mapping[str, Any] | None = None  # that world's settings, exactly as the data was recorded
    render_size: tuple[int, int] | None = None  # (H, W) the data was rendered at, when prompt_config is not given
    context_noise: float = 0.0  # the noise level the dream commits its own frames at (FlowSampler)
    camera: str = "model"  # "model" (the ego-motion head) or "action" (the fitted camera rules, collisions)
    motion: MotionModel | None = None  # the fitted camera rules (worldmodel.motion), needed by camera "action"
    memory: bool = False  # dream with a scene memory
    memory_first: bool = False  # the memory is the frame where it covers; the model paints the rest
    memory_first_trust: tuple[float, float] | None = None  # memory first only where trusted (tick.memory_first_frame)
    memory_settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # splat.MemoryConfig

    def __post_init__(self) -> None:
        if self.camera not in CAMERAS:
            raise SettingsError(f"camera must be 'model' or 'action', got {brief(self.camera)}")
        if self.camera == "action" and self.motion is None:
            raise SettingsError("camera 'action' needs the model's fitted camera rules (model.yaml info.motion); fit "
                                "them with python -m worldmodel.motion --checkpoint ..., or use camera 'model'")
        object.__setattr__(self, "memory_settings", MappingProxyType(dict(self.memory_settings)))
        if self.prompt_config is not None:
            object.__setattr__(self, "prompt_config", MappingProxyType(dict(self.prompt_config)))

    @property
    def rules(self) -> MotionModel | None:
        """The camera rules the tick moves the camera by: the fitted ones with camera "action", else None."""
        return self.motion if self.camera == "action" else None

    @classmethod
    def from_info(cls, info: Mapping[str, Any], where: str = "") -> "DreamSettings":
        """The settings of a model.yaml `info` mapping (provenance keys are not read). SettingsError naming the bad
        key, prefixed by `where` (the file)."""
        where = f"{where}: " if where else ""
        sampling = _block(info, "sampling", ("context_noise",), where)
        dream = _block(info, "dream", ("camera", "memory", "memory_first", "memory_first_trust"), where)
        prompt_world = info.get("prompt_world", "arena")
        if not isinstance(prompt_world, str) or not prompt_world:
            raise SettingsError(f"{where}info.prompt_world must be a world name, got {brief(prompt_world)}")
        prompt_config = info.get("prompt_config")
        if prompt_config is not None and not isinstance(prompt_config, Mapping):
            raise SettingsError(f"{where}info.prompt_config must be a mapping of world settings, got {brief(prompt_config)}")
        render = info.get("render_size")
        if render is not None and not (isinstance(render, (list, tuple)) and len(render) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in render)):
            raise SettingsError(f"{where}info.render_size must be [height, width] in pixels, got {brief(render)}")
        camera = dream.get("camera", "model")
        if camera not in CAMERAS:
            raise SettingsError(f"{where}info.dream.camera must be 'model' or 'action', got {brief(camera)}")
        motion = _motion(info.get("motion"), where)
        if camera == "action" and motion is None:
            raise SettingsError(f"{where}info.dream.camera is 'action' but info.motion (the fitted camera rules) is missing")
        return cls(
            prompt_world=prompt_world, prompt_config=prompt_config,
            render_size=None if render is None else (int(render[0]), int(render[1])),
            context_noise=_context_noise(sampling.get("context_noise", 0.0), f"{where}info.sampling.context_noise"),
            camera=camera, motion=motion,
            memory=_flag(dream.get("memory", False), f"{where}info.dream.memory"),
            memory_first=_flag(dream.get("memory_first", False), f"{where}info.dream.memory_first"),
            memory_first_trust=check_trust_gate(dream.get("memory_first_trust"), f"{where}info.dream.memory_first_trust"),
            memory_settings=check_memory_settings(info.get("memory"), f"{where}info.memory"))

    def choose(self, camera: str | None = None, memory: bool | None = None, memory_first: bool | None = None,
               memory_settings: Mapping[str, Any] | None = None, memory_first_trust: Any = None,
               context_noise: float | None = None, where: str = "") -> "DreamSettings":
        """These settings with the caller's choices over them (None keeps the model's), each checked: SettingsError
        naming it. `where` names the model for the error that camera "action" needs fitted rules."""
        changes: dict[str, Any] = {}
        if camera is not None:
            if camera not in CAMERAS:
                raise SettingsError(f"camera must be 'model' or 'action' (got {brief(camera)})")
            if camera == "action" and self.motion is None:
                raise SettingsError(f"{where + ': ' if where else ''}camera='action' needs the model's fitted motion "
                                    "(model.yaml info.motion); fit it with python -m worldmodel.motion --checkpoint ... "
                                    "or use camera='model'")
            changes["camera"] = camera
        if memory is not None:
            changes["memory"] = bool(memory)
        if memory_first is not None:
            changes["memory_first"] = bool(memory_first)
        if memory_settings is not None:
            changes["memory_settings"] = check_memory_settings(memory_settings, "memory_settings")
        if memory_first_trust is not None:
            changes["memory_first_trust"] = check_trust_gate(memory_first_trust)
        if context_noise is not None:
            changes["context_noise"] = _context_noise(context_noise, "context_noise")
        return replace(self, **changes)
