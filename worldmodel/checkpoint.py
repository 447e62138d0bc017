"""Model checkpoints: safetensors weights + a YAML config, and nothing that can run code when loaded.

A model directory holds

    model.yaml          {model: <ModelConfig>, info: {...training facts...}, weights_hash: <file_hash of the weights>}
    model.safetensors   autoencoder.* and dynamics.* weights (and upsampler.* when model.upsampler.scale > 1)

Loading checks the weights against `weights_hash` (models written before it existed have none and load
unchecked), so a damaged or swapped weights file is named instead of dreaming noise. An export writes both
files to temporary names, then renames the weights and model.yaml: a kill between the renames is finished on
the next load (model.yaml.tmp holds the new weights' hash), so it never reads as damaged.

Training state lives next to it in `state/`: per stage one safetensors file (weights, optimizer moments, RNG
states as tensors; progress, schedule and the other RNG states as JSON in its metadata), written to a temporary
name and renamed, so a kill leaves the previous state or the new one, never a mix. Loading checks every key
and shape against the config and says what does not fit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from engine.files import SharedFileError, brief, check_regular, load_yaml
from worldmodel.autoencoder import FrameAutoencoder
from worldmodel.config import ConfigError, ModelConfig
from worldmodel.device import resolve_device
from worldmodel.dynamics import DynamicsTransformer
from worldmodel.settings import PROVENANCE_KEYS, SETTING_KEYS, DreamSettings, SettingsError
from worldmodel.upsampler import FrameUpsampler

MODEL_YAML = "model.yaml"
MODEL_WEIGHTS = "model.safetensors"
HASH_KEY = "weights_hash"  # model.yaml: file_hash(model.safetensors)
# What model.yaml's `info:` may hold: the dream's settings (worldmodel.settings, read at run time) and provenance
# (never read at run time). A key not listed is refused by name, so a misspelt setting is never silently ignored.
# Code that writes a new info key adds it to one of the two.
INFO_KEYS: tuple[str, ...] = SETTING_KEYS + PROVENANCE_KEYS


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, or does not match its config."""


@dataclass
class LoadedModel:
    config: ModelConfig
    autoencoder: FrameAutoencoder
    dynamics: DynamicsTransformer
    info: dict[str, Any]
    hash: str  # sha256 of the weights file (first 16 hex digits): recordings cite it
    settings_hash: str = ""  # sha256 of model.yaml's model and info sections (how it dreams): recordings cite it too
    upsampler: FrameUpsampler | None = None  # the shown-frame upsampler (model.upsampler.scale > 1), else None
    settings: DreamSettings = DreamSettings()  # how it dreams (model.yaml info's settings, checked once)

    @property
    def device(self) -> torch.device:
        """Where the networks' weights are (load_model's `device`)."""
        return self.dynamics.image_in.weight.device


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    _publish(tmp)
    os.replace(tmp, path)


def _publish(tmp: Path) -> None:
    """fsync a freshly written file and give it the usual permissions (safetensors creates files 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())


def file_hash(path: Path) -> str:
    """The first 16 hex digits of the file's sha256 (what model.yaml `weights_hash` and recordings cite)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def save_model(directory: str | Path, config: ModelConfig, autoencoder: FrameAutoencoder,
               dynamics: DynamicsTransformer, info: dict[str, Any] | None = None, half: bool = False,
               hook: Any = None, upsampler: FrameUpsampler | None = None) -> Path:
    """Write model.safetensors + model.yaml into `directory` as one unit. `half`: store bf16 weights.

    Both are written in full to temporary names first (model.yaml.tmp carrying the new weights' hash), then
    renamed weights first: a kill between the two renames leaves new weights beside model.yaml.tmp, and
    `load_model` finishes that export (see `finish_interrupted_export`) instead of calling the weights damaged.
    `hook(point)`: fault injection for tests ("weights_renamed": between the two renames). `upsampler`: the
    shown-frame upsampler, required when config.upsampler.scale > 1 (and refused otherwise)."""
    if (upsampler is not None) != (config.upsampler.scale > 1):
        raise ValueError(f"save_model: config.upsampler.scale is {config.upsampler.scale} but "
                         f"{'an' if upsampler is not None else 'no'} upsampler was given")
    unknown = sorted(set(info or {}) - set(INFO_KEYS), key=str)
    if unknown:  # a writer's typo would make a model.yaml that load_model refuses: refuse it before writing
        raise ValueError(f"save_model: unknown info key(s) {unknown}; add them to worldmodel.settings' SETTING_KEYS "
                         "or PROVENANCE_KEYS")
    DreamSettings.from_info(info or {}, "save_model")  # SettingsError for a bad setting, before anything is written
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {}
    modules = [("autoencoder.", autoencoder), ("dynamics.", dynamics)]
    if upsampler is not None:
        modules.append(("upsampler.", upsampler))
    for prefix, module in modules:
        for k, v in module.state_dict().items():
            if half and v.is_floating_point() and "norm" not in k:  # keep latent statistics exact
                v = v.to(torch.bfloat16)
            tensors[prefix + k] = v
    weights_tmp = directory / (MODEL_WEIGHTS + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(weights_tmp),
              metadata={"format": "dreamwalk-model-1"})
    _publish(weights_tmp)
    data = {"model": config.to_dict(), "info": info or {}, HASH_KEY: file_hash(weights_tmp)}
    yaml_tmp = directory / (MODEL_YAML + ".tmp")
    yaml_tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    _publish(yaml_tmp)
    os.replace(weights_tmp, directory / MODEL_WEIGHTS)
    if hook is not None:
        hook("weights_renamed")
    os.replace(yaml_tmp, directory / MODEL_YAML)
    return directory


def save_loaded(directory: str | Path, model: LoadedModel, info: dict[str, Any]) -> Path:
    """Write a loaded model (every network it has, the upsampler included) with new model.yaml `info`."""
    return save_model(directory, model.config, model.autoencoder, model.dynamics, info, upsampler=model.upsampler)


def finish_interrupted_export(directory: Path) -> None:
    """An export killed between renaming its weights and its model.yaml left model.yaml.tmp whose hash is that
    of the (new) model.safetensors: complete it by renaming it into place. A model.yaml.tmp of any other hash is
    an export killed before its weights were renamed (the previous model stands) and is left alone."""
    tmp = directory / (MODEL_YAML + ".tmp")
    weights = directory / MODEL_WEIGHTS
    if not (tmp.is_file() and weights.is_file()):
        return
    try:
        pending = load_yaml(tmp)
    except (SharedFileError, OSError):
        return
    if not (isinstance(pending, dict) and "model" in pending and pending.get(HASH_KEY) == file_hash(weights)):
        return
    try:
        os.replace(tmp, directory / MODEL_YAML)
    except OSError as e:
        raise CheckpointError(f"an export into {directory} was interrupted after its weights were written: the new "
                              f"model's {MODEL_YAML} is complete in {tmp}, but could not be moved into place ({e}); "
                              f"rename it to {directory / MODEL_YAML} to finish the export") from None


def settings_hash(config: ModelConfig, info: dict[str, Any]) -> str:
    """The first 16 hex digits of the sha256 of model.yaml's model and info sections in canonical JSON: with the
    weights' hash it names how a model dreams (a change of a dream rule such as info.motion changes it)."""
    text = json.dumps({"model": config.to_dict(), "info": info}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_model_config(directory: str | Path) -> tuple[ModelConfig, dict[str, Any], DreamSettings]:
    """The config, info and dream settings of a model directory's model.yaml, checked (the weights are not read);
    CheckpointError naming what is wrong."""
    config, info, settings, _ = _read_model_yaml(Path(directory))
    return config, info, settings


def _read_model_yaml(directory: Path) -> tuple[ModelConfig, dict[str, Any], DreamSettings, str | None]:
    """(config, info, the dream settings in info, weights_hash or None for models written before the hash was
    recorded)."""
    finish_interrupted_export(directory)
    path = directory / MODEL_YAML
    if not directory.is_dir():
        raise CheckpointError(f"no model at {directory}: not a directory (train one with python -m worldmodel.train)")
    if not path.exists():
        raise CheckpointError(f"{directory} is not a model directory: {MODEL_YAML} is missing")
    try:
        data = load_yaml(path, within=directory)
    except SharedFileError as e:
        raise CheckpointError(str(e)) from None
    if not isinstance(data, dict) or "model" not in data:
        raise CheckpointError(f"{path} has no 'model:' section")
    try:
        config = ModelConfig.from_dict(data["model"])  # the file is named once, here
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    extra = sorted(set(data) - {"model", "info", HASH_KEY}, key=str)
    if extra:
        raise CheckpointError(f"{path}: unknown top-level key(s) {brief(extra)}; a model.yaml holds model, info, {HASH_KEY}")
    info = data.get("info") or {}
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: info must be a mapping, got {brief(info)}")
    unknown = sorted(set(info) - set(INFO_KEYS), key=str)
    if unknown:  # a typo (samplng) would otherwise silently drop a setting the dream depends on
        raise CheckpointError(f"{path}: unknown key(s) info.{unknown[0]}" + (f" (and {brief(unknown[1:])})" if unknown[1:] else "")
                              + f"; the known info keys are {list(INFO_KEYS)} (fix the spelling, or remove the key)")
    try:
        settings = DreamSettings.from_info(info, str(path))
    except SettingsError as e:
        raise CheckpointError(str(e)) from None
    expected = data.get(HASH_KEY)
    if expected is not None and not (isinstance(expected, str) and len(expected) == 16
                                     and all(c in "0123456789abcdef" for c in expected)):
        raise CheckpointError(f"{path}: {HASH_KEY} must be 16 lowercase hex digits (file_hash of {MODEL_WEIGHTS}), "
                              f"got {brief(expected)}")
    return config, info, settings, expected


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model directory onto `device` ("cpu", "cuda", "auto": worldmodel.device.resolve_device); raise
    CheckpointError naming what is wrong (missing, truncated, mismatched), DeviceError for a device not here."""
    device = resolve_device(device)
    directory = Path(directory)
    config, info, settings, expected = _read_model_yaml(directory)
    weights = directory / MODEL_WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{directory}: {MODEL_WEIGHTS} is missing")
    try:
        check_regular(weights, within=directory)
    except SharedFileError as e:
        raise CheckpointError(str(e)) from None
    # The file's header (names, shapes, dtypes; no data) against the networks model.yaml describes, built on the
    # meta device (no memory): a mismatch is found before anything is allocated or read.
    header = _weights_header(weights)
    with torch.device("meta"):
        shapes = {f"autoencoder.{k}": v.shape for k, v in FrameAutoencoder(config.autoencoder).state_dict().items()}
        shapes.update({f"dynamics.{k}": v.shape
                       for k, v in DynamicsTransformer(config.dynamics, config.latent_shape).state_dict().items()})
        if config.upsampler.scale > 1:
            shapes.update({f"upsampler.{k}": v.shape for k, v in FrameUpsampler(config.upsampler).state_dict().items()})
    _match_header(header, shapes, weights)
    try:
        tensors = load_file(str(weights), device="cpu")  # checked here, then the modules move as a whole
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is unreadable (truncated or not safetensors): {e}") from None
    actual = file_hash(weights)
    if expected is not None and actual != expected:
        raise CheckpointError(f"{weights} is damaged or was replaced: its hash is {actual}, but {directory / MODEL_YAML} "
                              f"records {HASH_KEY}: {expected} (copy the model again, or retrain it)")
    ae = FrameAutoencoder(config.autoencoder)
    dyn = DynamicsTransformer(config.dynamics, config.latent_shape)
    up = FrameUpsampler(config.upsampler) if config.upsampler.scale > 1 else None
    modules = [("autoencoder.", ae), ("dynamics.", dyn)] + ([("upsampler.", up)] if up is not None else [])
    for prefix, module in modules:
        _load_into(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, f"{weights} ({prefix[:-1]})")
        module.to(device).eval()
    return LoadedModel(config, ae, dyn, info, actual, settings_hash(config, info), upsampler=up, settings=settings)


WEIGHT_DTYPES = ("F32", "F16", "BF16")  # safetensors dtype names of the floats a model may hold


def _weights_header(weights: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{tensor name: (safetensors dtype, shape)} from the file's header alone."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            out = {}
            for name in f.keys():
                piece = f.get_slice(name)
                out[name] = (piece.get_dtype(), tuple(piece.get_shape()))
            return out
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{weights} is unreadable (truncated or not safetensors): {e}") from None


def _match_header(header: dict[str, tuple[str, tuple[int, ...]]], shapes: dict[str, torch.Size], weights: Path | str) -> None:
    """CheckpointError unless `header` ({name: (safetensors dtype, shape)}, of a file or of tensors read from one)
    holds exactly the tensors `shapes` names, at those shapes, as floats."""
    missing = sorted(set(shapes) - set(header))
    unexpected = sorted(set(header) - set(shapes))
    wrong = [f"{k}: file {header[k][1]} vs model.yaml {tuple(v)}" for k, v in shapes.items()
             if k in header and header[k][1] != tuple(v)]
    dtypes = sorted({d for d, _ in header.values()} - set(WEIGHT_DTYPES))
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensor(s) e.g. {brief(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) model.yaml has no place for, e.g. {brief(unexpected[:3])}")
    if wrong:
        parts.append(f"shape mismatch {brief(wrong[:3])}")
    if dtypes:
        parts.append(f"tensors stored as {dtypes} (a model holds {'/'.join(WEIGHT_DTYPES)} floats; a quantised file "
                     "is not one this project reads)")
    if parts:
        raise CheckpointError(f"{weights} does not match its model.yaml (another architecture or config?): "
                              + "; ".join(parts))


_SAFETENSORS_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def _load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    expected = module.state_dict()
    _match_header({k: (_SAFETENSORS_DTYPE.get(v.dtype, str(v.dtype)), tuple(v.shape)) for k, v in tensors.items()},
                  {k: v.shape for k, v in expected.items()}, where)
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


# -- training state ------------------------------------------------------------------------------------

STATE_FORMAT = "dreamwalk-state-2"


def module_hash(module: torch.nn.Module) -> str:
    """16 hex digits of the sha256 of a module's state (names, dtypes, shapes, values): what the latents cache
    is keyed on, so a changed autoencoder rebuilds it."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def state_path(directory: Path, name: str) -> Path:
    return Path(directory) / f"{name}.safetensors"


def save_state(directory: Path, name: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
               progress: dict[str, Any], rng: dict[str, Any] | None = None, hook=None) -> None:
    """One training stage's state as one file, replaced atomically: the weights, the AdamW moments, the
    progress (step, schedule, ...) and the RNG states (`rng`: {"tensors": {name: tensor}, "plain": JSON-able}),
    so a kill at any moment leaves either the previous state or this one, never a mix.
    `hook(point)`: fault injection for tests (called once the temporary file is written, before the rename)."""

    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in module.state_dict().items()}
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, value in st.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    rng = rng or {}
    for k, v in (rng.get("tensors") or {}).items():
        tensors[f"rng.{k}"] = v
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": list(g["params"])} for g in opt["param_groups"]]
    metadata = {"format": STATE_FORMAT, "progress": json.dumps(_plain(progress)),
                "param_groups": json.dumps(_plain(groups)), "rng": json.dumps(rng.get("plain") or {})}
    final = state_path(directory, name)
    tmp = final.with_name(final.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    _publish(tmp)
    if hook is not None:
        hook(f"{name}.state_written")
    os.replace(tmp, final)
    legacy = directory / f"{name}.yaml"  # the progress half of the old two-file format: stale from now on
    if legacy.exists():
        legacy.unlink()


def read_progress(directory: Path, name: str) -> dict[str, Any] | None:
    """The progress dict of a stage's saved state (None when there is none), without loading the tensors."""

    path = state_path(directory, name)
    if not path.exists():
        return None
    try:

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"training state {path} is unreadable: {e}") from None
    if meta.get("format") == STATE_FORMAT:
        return json.loads(meta["progress"])
    try:  # the old format: progress in NAME.yaml beside the tensors
        return (load_yaml(directory / f"{name}.yaml") or {}).get("progress")
    except (OSError, SharedFileError) as e:
        raise CheckpointError(f"training state {directory / name}.yaml is unreadable: {e}") from None


def load_state(directory: Path, name: str, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore what `save_state` wrote into `module` and `optimizer`; returns the progress dict, with the RNG
    states under "rng" ({"tensors": ..., "plain": ...}, or None for a state saved before they were kept)."""

    path = state_path(directory, name)
    try:

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        if meta.get("format") == STATE_FORMAT:
            progress = json.loads(meta["progress"])
            groups = json.loads(meta["param_groups"])
            rng = {"tensors": {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")},
                   "plain": json.loads(meta.get("rng") or "{}")}
        else:  # the old two-file format (no RNG states)
            old = load_yaml(directory / f"{name}.yaml")
            progress, groups, rng = old["progress"], old["param_groups"], None
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"training state {path} is unreadable: {e}") from None
    _load_into(module, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, str(path))
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return dict(progress) | {"rng": rng}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.item()
    return obj
