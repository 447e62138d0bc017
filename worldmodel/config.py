"""Typed configuration of the neural world model, loaded strictly from YAML.

A model preset is a YAML file with a top-level ``model:`` section (and, owned by the training code, an
optional ``train:`` section that this module ignores):

    model:
      frame_size: [64, 64]
      autoencoder: {latent_channels: 16, downsample: 8, ...}
      dynamics: {dim: 256, layers: 6, ...}

Every section loads into a dataclass. An unknown key or a value of the wrong type raises `ConfigError`
naming the key (and the file), with the valid keys listed: a typo must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.action import ACTION_DIM
from engine.files import SharedFileError, brief, load_yaml


class ConfigError(ValueError):
    """A configuration key is unknown, missing, or holds a value of the wrong type or range."""


def _check_ranges(section: str, obj: Any, ranges: dict[str, tuple[float, float]]) -> None:
    """Each named field (a number, or a list of numbers) finite and within [lo, hi]: sizes are bounded before any
    network is built, so a model.yaml cannot ask for a 72 GB tensor (the bounds hold every preset, large included)."""
    for name, (lo, hi) in ranges.items():
        value = getattr(obj, name)
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(f"{section}.{name} must be within [{lo:g}, {hi:g}], got {brief(value)}")


# ----------------------------------------------------------------------------------------------
# The sections


@dataclass
class AutoencoderConfig:
    """The frame autoencoder: RGB (+ depth) [B,3(+1),H,W] <-> latent [B, latent_channels, H/ds, W/ds]."""

    latent_channels: int = 16
    downsample: int = 8  # spatial factor frame -> latent; a power of two
    # Widths per resolution level from H/2 down to H/ds (log2(ds) entries): the encoder starts with a
    # space-to-depth to H/2 and the decoder ends with a sub-pixel conv from H/2, so nothing runs at H.
    encoder_channels: tuple[int, ...] = (64, 96, 128)
    # Decoder widths from the latent (H/ds) up to H/2; narrow at the top because decoding is per tick.
    decoder_channels: tuple[int, ...] = (128, 96, 48)
    res_blocks: int = 1  # residual blocks per resolution level
    use_depth: bool = True  # encode/decode a depth channel next to RGB
    max_depth: float = 50.0  # metres; depth is clamped here before log-normalisation

    def __post_init__(self) -> None:
        _check_ranges("autoencoder", self, {"latent_channels": (1, 256), "downsample": (2, 64),
                                            "encoder_channels": (1, 4096), "decoder_channels": (1, 4096),
                                            "res_blocks": (0, 16), "max_depth": (1e-3, 1e4)})
        levels = self.downsample.bit_length() - 1
        if self.downsample < 2 or 2**levels != self.downsample:
            raise ConfigError(f"autoencoder.downsample must be a power of two >= 2, got {self.downsample}")
        for name in ("encoder_channels", "decoder_channels"):
            if len(getattr(self, name)) != levels:
                raise ConfigError(
                    f"autoencoder.{name} needs {levels} entries for downsample={self.downsample} "
                    f"(one per resolution level), got {list(getattr(self, name))}"
                )
        if self.max_depth <= 0:
            raise ConfigError(f"autoencoder.max_depth must be positive metres, got {self.max_depth}")


@dataclass
class DynamicsConfig:
    """The action-conditioned block-causal transformer over latent frames."""

    dim: int = 256
    layers: int = 6
    heads: int = 4  # head dim = dim / heads
    mlp_ratio: float = 4.0
    patch_size: int = 1  # latent pixels per token side; tokens/frame = (h/p) * (w/p)
    action_dim: int = ACTION_DIM
    look_scale_deg: float = 10.0  # yaw/pitch (last two action entries) are divided by this
    # The network predicts x0 (clean latent) or the rectified-flow velocity (noise - x0).
    prediction: Literal["x0", "velocity"] = "x0"
    # Relative temporal position: one learned bias per head per frame distance, clamped here.
    max_rel_frames: int = 32
    window: int = 16  # frames of recent context kept in the streaming KV cache
    sinks: int = 1  # first frames kept forever (StreamingLLM / LongLive attention sinks)
    use_memory: bool = True  # accept a splat-memory latent (+ coverage alpha) per frame
    # Ego-motion head output scale: [dx, dy, dz] metres and [dyaw, dpitch] degrees per tick.
    pose_scale: tuple[float, ...] = (0.25, 0.25, 0.25, 5.0, 5.0)

    def __post_init__(self) -> None:
        _check_ranges("dynamics", self, {"dim": (1, 8192), "layers": (1, 128), "heads": (1, 128), "mlp_ratio": (0.01, 16),
                                         "patch_size": (1, 16), "action_dim": (1, 256), "look_scale_deg": (1e-3, 360),
                                         "max_rel_frames": (1, 4096), "window": (1, 4096), "sinks": (0, 4096),
                                         "pose_scale": (1e-6, 1e3)})
        if self.dim % self.heads:
            raise ConfigError(f"dynamics.dim={self.dim} must be divisible by dynamics.heads={self.heads}")
        if self.prediction not in ("x0", "velocity"):
            raise ConfigError(f"dynamics.prediction must be 'x0' or 'velocity', got {self.prediction!r}")
        if len(self.pose_scale) != 5:
            raise ConfigError(f"dynamics.pose_scale needs 5 numbers (dx, dy, dz, dyaw, dpitch), got {self.pose_scale}")
        if self.window < 1 or self.sinks < 0:
            raise ConfigError(f"dynamics.window must be >= 1 and sinks >= 0, got {self.window}, {self.sinks}")


@dataclass
class UpsamplerConfig:
    """The shown-frame upsampler (worldmodel/upsampler.py): the frame a tick shows (RGB + depth at frame_size) ->
    RGB at `scale` x frame_size. scale 1: none (the frame is shown as dreamed)."""

    scale: int = 1  # 1 (off) or 2
    channels: int = 32
    blocks: int = 4  # residual blocks at the input size

    def __post_init__(self) -> None:
        _check_ranges("upsampler", self, {"channels": (1, 1024), "blocks": (0, 32)})
        if self.scale not in (1, 2):
            raise ConfigError(f"upsampler.scale must be 1 (no upsampler) or 2, got {brief(self.scale)}")


@dataclass
class ModelConfig:
    """Everything needed to build the networks: frame size, autoencoder, dynamics."""

    frame_size: tuple[int, int] = (64, 64)  # (H, W) pixels
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    upsampler: UpsamplerConfig = field(default_factory=UpsamplerConfig)  # scale 1: none

    def __post_init__(self) -> None:
        _check_ranges("model", self, {"frame_size": (8, 4096)})
        h, w = self.frame_size
        ds, p = self.autoencoder.downsample, self.dynamics.patch_size
        if h % (ds * p) or w % (ds * p):
            raise ConfigError(
                f"frame_size {list(self.frame_size)} must be divisible by autoencoder.downsample * "
                f"dynamics.patch_size = {ds} * {p}"
            )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one latent frame."""
        ds = self.autoencoder.downsample
        return (self.autoencoder.latent_channels, self.frame_size[0] // ds, self.frame_size[1] // ds)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | None = None) -> "ModelConfig":
        """Build from the ``model:`` section of a preset; `source` (a file name) goes into errors."""
        return _build(cls, data, "model", source)

    @property
    def shown_size(self) -> tuple[int, int]:
        """(H, W) of the frame a tick shows: frame_size times the upsampler's scale."""
        s = self.upsampler.scale
        return (self.frame_size[0] * s, self.frame_size[1] * s)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) that `from_dict` reads back and `yaml.safe_dump` writes. A model without an
        upsampler has no `upsampler` key (so its settings hash is what it was before upsamplers existed)."""
        d = _plain(dataclasses.asdict(self))
        if self.upsampler.scale == 1:
            del d["upsampler"]
        return d


def read_preset(path: str | Path) -> dict[str, Any]:
    """A preset YAML file's top level, checked: a mapping with a ``model:`` section and optionally ``train:``."""
    path = Path(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except SharedFileError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(data, dict) or "model" not in data:
        raise ConfigError(f"{path}: expected top-level 'model:' (and 'train:') sections")
    extra = set(data) - {"model", "train"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {brief(sorted(extra, key=str))}; valid keys: ['model', 'train']")
    return data


def load_config(path: str | Path) -> ModelConfig:
    """Read a preset YAML file: its ``model:`` section; a top-level ``train:`` section is left to training."""
    return ModelConfig.from_dict(read_preset(path)["model"], source=str(path))


# ----------------------------------------------------------------------------------------------
# Strict dict -> dataclass conversion


def _where(key: str, source: str | None) -> str:
    return f"'{key}'" + (f" in {source}" if source else "")


def _build(cls: type, data: Any, prefix: str, source: str | None) -> Any:
    """Construct dataclass `cls` from `data`, checking every key and value type recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{_where(prefix, source)} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key {_where(f'{prefix}.{unknown[0]}', source)}; valid keys of {prefix}: {names}"
        )
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}", source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:  # add the file to range errors raised in __post_init__
        raise ConfigError(f"{e}" + (f" (in {source})" if source else "")) from None


def _convert(value: Any, hint: Any, key: str, source: str | None) -> Any:
    """Check `value` against type `hint`; return it converted (lists -> tuples, int -> float)."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, source)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{_where(key, source)} must be one of {list(typing.get_args(hint))}, got {brief(value)}")
        return value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(key, source)} must be a mapping, got {brief(value)}")
        return dict(value)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{_where(key, source)} must be a list, got {brief(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{_where(key, source)} must be a list of {len(args)} values, got {brief(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _convert(value, arg, key, source)
            except ConfigError:
                pass
        raise ConfigError(f"{_where(key, source)} has the wrong type: expected {hint}, got {brief(value)}")
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{_where(key, source)} must be null, got {brief(value)}")
        return None
    # bool is an int in Python; a YAML `true` where a number belongs is a mistake, not a 1.
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        raise TypeError(f"config type {hint} of {key} is not supported by the loader")
    if not ok:
        raise ConfigError(
            f"{_where(key, source)} must be {hint.__name__}, got {type(value).__name__} {brief(value)}"
        )
    return value


def _plain(obj: Any) -> Any:
    """Tuples -> lists, recursively, so YAML holds plain lists."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
