"""Model checkpoints: safetensors weights + a YAML config, and nothing that can run code when loaded.

A model directory holds

    model.yaml          {model: <ModelConfig>, info: {...training facts...}}
    model.safetensors   autoencoder.* and dynamics.* weights

Training state (optimizer moments, step counters) lives next to it in `state/` and is saved the same
way: tensors in safetensors, the rest in YAML. Loading checks every key and shape against the config
and says what does not fit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldmodel.autoencoder import FrameAutoencoder
from worldmodel.config import ConfigError, ModelConfig, _build
from worldmodel.dynamics import DynamicsTransformer

MODEL_YAML = "model.yaml"
MODEL_WEIGHTS = "model.safetensors"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, or does not match its config."""


@dataclass
class LoadedModel:
    config: ModelConfig
    autoencoder: FrameAutoencoder
    dynamics: DynamicsTransformer
    info: dict[str, Any]
    hash: str  # sha256 of the weights file (first 16 hex digits): recordings cite it

    @property
    def context_noise(self) -> float:
        """The noise level the dream commits its own frames at, chosen for this model on validation data
        (model.yaml `info: {sampling: {context_noise: ...}}`); 0 (clean) when the model does not say."""
        return float((self.info.get("sampling") or {}).get("context_noise", 0.0))

    @property
    def memory_settings(self) -> dict[str, Any]:
        """splat.MemoryConfig fields the model's scene memory uses (model.yaml `info: {memory: {...}}`): the
        memory it was fine-tuned with, or the one chosen for it on validation revisits; {} = the defaults."""
        return {k: v for k, v in (self.info.get("memory") or {}).items() if k != "chosen_by"}


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def save_model(directory: str | Path, config: ModelConfig, autoencoder: FrameAutoencoder,
               dynamics: DynamicsTransformer, info: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write model.safetensors + model.yaml into `directory` (atomically). `half`: store bf16 weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for prefix, module in (("autoencoder.", autoencoder), ("dynamics.", dynamics)):
        for k, v in module.state_dict().items():
            if half and v.is_floating_point() and "norm" not in k:  # keep latent statistics exact
                v = v.to(torch.bfloat16)
            tensors[prefix + k] = v
    _atomic_save_tensors(tensors, directory / MODEL_WEIGHTS, {"format": "dreamwalk-model-1"})
    _atomic_write(directory / MODEL_YAML, yaml.safe_dump({"model": config.to_dict(), "info": info or {}}, sort_keys=False))
    return directory


def read_model_config(directory: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    directory = Path(directory)
    path = directory / MODEL_YAML
    if not directory.is_dir():
        raise CheckpointError(f"no model at {directory}: not a directory (train one with python -m worldmodel.train)")
    if not path.exists():
        raise CheckpointError(f"{directory} is not a model directory: {MODEL_YAML} is missing")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path} has no 'model:' section")
    try:
        config = ModelConfig.from_dict(data["model"], source=str(path))
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    info = data.get("info") or {}
    sampling = info.get("sampling") or {}
    if not isinstance(sampling, dict) or set(sampling) - {"context_noise", "chosen_by"}:
        raise CheckpointError(f"{path}: info.sampling must be a mapping with the keys context_noise, chosen_by; got {sampling!r}")
    cn = sampling.get("context_noise", 0.0)
    if isinstance(cn, bool) or not isinstance(cn, (int, float)) or not 0.0 <= cn < 1.0:
        raise CheckpointError(f"{path}: info.sampling.context_noise must be a number in [0, 1), got {cn!r}")
    check_memory_settings(info.get("memory"), f"{path}: info.memory")
    return config, info


def check_memory_settings(settings: Any, where: str) -> dict[str, Any]:
    """Scene-memory settings: a mapping of splat.MemoryConfig fields (not width/height: the model's frame size
    sets those) plus an optional `chosen_by` note. Raises CheckpointError naming the bad key or value."""
    if settings is None:
        return {}
    from dataclasses import fields

    from splat import MemoryConfig

    allowed = sorted(f.name for f in fields(MemoryConfig) if f.name not in ("width", "height"))
    if not isinstance(settings, dict):
        raise CheckpointError(f"{where} must be a mapping of scene-memory settings, got {settings!r}")
    unknown = sorted(set(settings) - set(allowed) - {"chosen_by"}, key=str)
    if unknown:
        raise CheckpointError(f"{where}: unknown key(s) {unknown}; the scene-memory settings are {allowed} (and chosen_by)")
    values = {k: v for k, v in settings.items() if k != "chosen_by"}
    try:  # the project's strict config loader checks the types (a YAML true is not a 1), then MemoryConfig its ranges
        _build(MemoryConfig, values, where, None)
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None
    return values


def load_model(directory: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a model directory; raise CheckpointError naming what is wrong (missing, truncated, mismatched)."""
    directory = Path(directory)
    config, info = read_model_config(directory)
    weights = directory / MODEL_WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{directory}: {MODEL_WEIGHTS} is missing")
    try:
        tensors = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is unreadable (truncated or not safetensors): {e}") from None
    ae = FrameAutoencoder(config.autoencoder)
    dyn = DynamicsTransformer(config.dynamics, config.latent_shape)
    for prefix, module in (("autoencoder.", ae), ("dynamics.", dyn)):
        _load_into(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, f"{weights} ({prefix[:-1]})")
    ae.eval()
    dyn.eval()
    return LoadedModel(config, ae, dyn, info, file_hash(weights))


def _load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: file {tuple(tensors[k].shape)} vs config {tuple(v.shape)}"
             for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} e.g. {unexpected[:3]}")
        if wrong:
            parts.append(f"shape mismatch {wrong[:3]}")
        raise CheckpointError(f"{where} does not match its model.yaml (another architecture or config?): " + "; ".join(parts))
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


# -- training state ------------------------------------------------------------------------------------


def save_state(directory: Path, name: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               progress: dict[str, Any]) -> None:
    """Weights + AdamW moments of one training stage, and its progress counters (step, rng, ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, value in st.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    _atomic_save_tensors(tensors, directory / f"{name}.safetensors")
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": list(g["params"])} for g in opt["param_groups"]]
    _atomic_write(directory / f"{name}.yaml", yaml.safe_dump({"progress": progress, "param_groups": _plain(groups)}))


def load_state(directory: Path, name: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what `save_state` wrote; returns the progress dict."""
    try:
        tensors = load_file(str(directory / f"{name}.safetensors"))
        meta = yaml.safe_load((directory / f"{name}.yaml").read_text())
    except (SafetensorError, OSError, ValueError, yaml.YAMLError) as e:
        raise CheckpointError(f"training state {directory / name} is unreadable: {e}") from None
    _load_into(module, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(directory / name))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return meta["progress"]


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.item()
    return obj
