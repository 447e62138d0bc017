"""Train a world model from engine recordings: the frame autoencoder, then the dynamics transformer.

    python -m worldmodel.train --config assets/configs/model_default.yaml --data data/arena_train --out runs/m1
    python -m worldmodel.train --out runs/m1 --resume                        # after a kill, carry on
    torchrun --nproc_per_node=2 -m worldmodel.train --config ... --out ...   # data-parallel (gloo on CPU)
    python -m worldmodel.train ... --device cuda                              # on a GPU (bf16 autocast)
    torchrun --nproc_per_node=8 -m worldmodel.train ... --device cuda         # one GPU per rank (NCCL)

`--device auto` (the default) trains on CUDA when torch sees a GPU, else on the CPU. Under torchrun each rank
takes the GPU of its LOCAL_RANK and the ranks all-reduce over NCCL; on the CPU over gloo.

Stage 1 fits the autoencoder on single frames (RGB + depth when the data has it); with train.decoder_steps > 0
the decoder alone is then sharpened (training/decoder.py: encoder frozen, so the latents do not change). Its latents are then
computed once for every frame, together with a memory image per frame (earlier ground-truth frames
reprojected into that frame's camera, the stand-in for the splat memory), and stage 2 trains the
dynamics on clips of latents with the flow-matching objective (Diffusion Forcing noise levels), the
memory dropped at random so the model also works without it, and the ego-motion head when poses exist.
With train.adv_steps > 0, stage 2b post-trains the dynamics' one-step sample against a patch discriminator
(training/adversarial.py; with steps: 0 and init_from, on that model's dynamics).

The run directory holds `model.yaml` + `model.safetensors` (the current model, loadable by DreamWorld
and evaluate; model.yaml's step is the step of those weights), `state/` (for --resume), `log.jsonl`
(metrics) and `train.yaml` (the full config of the run).

Resuming. Each stage's state (`state/ae.safetensors`, `state/dyn.safetensors`) is one file holding the
weights, the optimizer moments, the random states (torch CPU/CUDA, numpy, Python, the data sampler; every
rank's), the step, the LR schedule and the bf16 choice, written to a temporary name and renamed after every
checkpoint and each stage's last step. The autoencoder's state is marked final only after the latent
normalisation is fitted. So a run killed at any point and continued with `--resume` ends with the same
weights as the uninterrupted run (same device, threads and library versions). `--resume` continues with the
run's train.yaml; a command whose config differs is refused, naming the differences, unless
`--override-config`. The frame and latent caches in `state/` are keyed on the recordings' contents and the
autoencoder's weights: an edited recording or another autoencoder rebuilds them.

The code is in worldmodel/training/: common.py (the train: config, distributed set-up, logging, apply_gradients),
context.py (TrainContext: the run's set-up and its state/checkpoint helpers), and the stages as functions of that
context: data.py (frames and latents, cached), autoencoder.py (stage 1), decoder.py (stage 1b), memory_images.py
(the memory-image generators, memory_batch), dynamics.py (stage 2) and adversarial.py (stage 2b). This module is the
command line, and its Trainer runs the stages in order.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch.distributed as dist

from engine.cli import Parser, SetError, parse_set
from engine.files import FolderBusyError, folder_lock
from engine.recording import RecordingError
from worldmodel.checkpoint import CheckpointError
from worldmodel.config import ConfigError, ModelConfig, _build, _plain
from worldmodel.data import DataError
from worldmodel.device import DEVICE_CHOICES, DeviceError
from worldmodel.evaluation.trajectories import recordings_setup
from worldmodel.training.common import (HOOKS, PRESETS, RUN_CONFIG, STOP, STOPPABLE, TrainConfig, TrainingDiverged,
                                        TrainingStopped, apply_gradients, bf16_is_faster, init_distributed,
                                        load_presets, preset_path)
from worldmodel.training.memory_images import memory_batch
from worldmodel.training.trainer import Trainer

TRAIN_LOCK = ".train.lock"  # held in --out while a training run writes there

# What tests and scripts import from here (the fault hooks, main, the config, ...); most now live in training/.
__all__ = ["HOOKS", "TrainConfig", "Trainer", "apply_gradients", "bf16_is_faster", "load_presets", "main",
           "memory_batch", "resolve_config"]


# Keys a resumed run may change without --override-config: they change when and what is logged, not the result.
HARMLESS_KEYS = ("train.checkpoint_minutes", "train.log_every")


def config_differences(a: tuple[ModelConfig, TrainConfig], b: tuple[ModelConfig, TrainConfig]) -> list[str]:
    """'section.key: new (the run's: old)' for each value that differs between a run's config `a` and `b`."""
    def flat(prefix: str, value: Any, out: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{prefix}.{k}", v, out)
        else:
            out[prefix] = value
        return out

    old = flat("model", a[0].to_dict(), flat("train", _plain(asdict(a[1])), {}))
    new = flat("model", b[0].to_dict(), flat("train", _plain(asdict(b[1])), {}))
    return [f"{k}: {new.get(k)!r} (the run's: {old.get(k)!r})" for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]


def _set_model_keys(mcfg: ModelConfig, items: dict[str, Any]) -> ModelConfig:
    """`--set model.dynamics.dim=256`-style items applied to the model section, checked like the file."""
    if not items:
        return mcfg
    raw = mcfg.to_dict()
    for key, value in items.items():
        parts = key.split(".")[1:]
        node = raw
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {key}: model has no section {part!r}; sections: model.autoencoder.*, "
                                  "model.dynamics.*, model.frame_size")
            node = node[part]
        node[parts[-1]] = value
    return ModelConfig.from_dict(raw, source="--set")


def resolve_config(config: Path | None, out: Path, overrides: list[str], data: list[str] | None, resume: bool,
                   override: bool, say=print, preset: str | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The run's config: the preset (`config` or a named `preset`; resuming without either, the run's train.yaml) +
    --set (train keys, and model.* keys) + --data, every value checked. A named preset trains on RGB only when the
    recordings have no depth. A resumed run whose config differs from its train.yaml is refused, naming the
    differences, unless `override` (--override-config)."""
    run_yaml = out / RUN_CONFIG
    if resume and not (out / "state").exists() and not (out / "base" / "state").exists():
        raise ConfigError(f"--resume: {out} has no training state to resume")
    if config is not None and preset is not None:
        raise ConfigError("give --preset NAME or --config FILE, not both")
    if preset is not None:
        config = preset_path(preset)
    if config is None:
        if not resume:
            raise ConfigError("--preset or --config is required: --preset " + "|".join(PRESETS)
                              + " or a file with model: and train: sections (only --resume may leave them out)")
        if not run_yaml.exists():
            raise ConfigError(f"--resume: {run_yaml} is missing, so the run's config is unknown; give --config")
    mcfg, tcfg = load_presets(config if config is not None else run_yaml)
    items = parse_set(overrides, "--set", "steps=100")
    mcfg = _set_model_keys(mcfg, {k: v for k, v in items.items() if k.startswith("model.")})
    raw = _plain(asdict(tcfg))
    raw.update({k.removeprefix("train."): v for k, v in items.items() if not k.startswith("model.")})
    if data:
        raw["data"] = list(data)
    tcfg = _build(TrainConfig, raw, "train", "--set/--data")
    if not tcfg.data:
        raise ConfigError("no training data: pass --data DIR (recordings from python -m engine.rollout)")
    if preset is not None and mcfg.autoencoder.use_depth and not recordings_setup(list(tcfg.data))["has_depth"]:
        say("note: the recordings have no depth: the model trains on RGB only (autoencoder.use_depth: false)")
        mcfg = _set_model_keys(mcfg, {"model.autoencoder.use_depth": False})
    if resume and run_yaml.exists():
        differences = config_differences(load_presets(run_yaml), (mcfg, tcfg))
        significant = [line for line in differences if line.split(":")[0] not in HARMLESS_KEYS]
        if significant and not override:
            raise ConfigError(f"--resume: this command's config differs from the run's {run_yaml}: "
                              + "; ".join(significant) + ". Resume with the run's own config (leave out --config, "
                              "or drop these --set/--data), or pass --override-config to continue with the new values")
        if differences:
            say(f"note: resuming with a changed config (train.yaml is updated): {'; '.join(differences)}")
    return mcfg, tcfg


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m worldmodel.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="a named size (assets/configs/): tiny (tests), small (minutes on a CPU), medium (the shipped "
                        "model's size, hours), large (for a GPU); with validation split, memory fine-tune and chosen settings")
    p.add_argument("--config", type=Path, default=None,
                   help="your own YAML with model: and train: sections (with --resume: default the run's own train.yaml)")
    p.add_argument("--data", nargs="+", default=None, help="recording directories (replace train.data)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with the run's config (train.yaml)")
    p.add_argument("--override-config", action="store_true",
                   help="with --resume: accept a config (--config/--set/--data) that differs from the run's train.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train: key, e.g. --set steps=100, or a model key, e.g. --set model.dynamics.layers=6")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES,
                   help="auto (default): CUDA when torch sees a GPU, else the CPU; under torchrun each rank takes "
                        "cuda:LOCAL_RANK (NCCL) or shares the CPU (gloo)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes that prepare the reprojected memory images (numpy, one core each; default 1)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        d = init_distributed(args.device)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finished = False
    signals = _stop_on_signals()
    try:
        say = print if d.main else (lambda _: None)
        mcfg, tcfg = resolve_config(args.config, args.out, args.overrides, args.data, args.resume, args.override_config,
                                    say=say, preset=args.preset)
        out = Path(args.out)
        created = d.main and not out.exists()
        if d.main:
            out.mkdir(parents=True, exist_ok=True)
        try:  # one training run per --out at a time (a second --resume would race the first on its state and log)
            with folder_lock(out, TRAIN_LOCK, "training run") if d.main else contextlib.nullcontext():
                if tcfg.staged:
                    from worldmodel.training.pipeline import Pipeline

                    Pipeline(mcfg, tcfg, args.out, args.resume, d, progress=not args.no_progress,
                             workers=args.workers).run()
                else:
                    Trainer(mcfg, tcfg, args.out, args.resume, d, progress=not args.no_progress,
                            workers=args.workers).run()
                finished = True
        finally:
            if created:  # a run refused before it wrote anything leaves no folder behind
                with contextlib.suppress(OSError):
                    out.rmdir()
    except (ConfigError, DataError, CheckpointError, FileExistsError, SetError, RecordingError, TrainingDiverged,
            FolderBusyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (TrainingStopped, KeyboardInterrupt) as e:
        code = 128 + (signals.got or signal.SIGINT)
        if d.main:
            resume = f"python -m worldmodel.train --out {args.out} --resume"
            if isinstance(e, TrainingStopped):
                print(f"stopped: the {e.stage} stage's state at step {e.step} is saved in {args.out}; continue with: "
                      f"{resume}", file=sys.stderr)
            else:
                print(f"stopped: what had finished is kept in {args.out} (its checkpoints and finished stages); "
                      f"continue with: {resume}", file=sys.stderr)
        return code
    finally:
        signals.restore()
        if d.world > 1 and dist.is_initialized():
            if finished:  # leave together: a rank that tears gloo down while rank 0 still writes the model can abort
                dist.barrier()
            dist.destroy_process_group()
    return 0


class _Signals:
    """SIGINT / SIGTERM during training: inside a stage's steps, the first one makes the loop save its state at the end
    of the step and stop (TrainingStopped); elsewhere, or a second one, stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.got: int | None = None
        self.previous: dict[int, Any] = {}

    def handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 (the signal module's signature)
        self.got = signum
        if STOPPABLE and not STOP.is_set():
            STOP.set()
            print(f"\n{signal.Signals(signum).name}: saving the {STOPPABLE[-1]} stage's state after this step, then "
                  "stopping (again to stop at once)", file=sys.stderr, flush=True)
            return
        raise KeyboardInterrupt

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        STOP.clear()


def _stop_on_signals() -> _Signals:
    signals = _Signals()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signals.previous[signum] = signal.signal(signum, signals.handle)
    return signals


if __name__ == "__main__":
    sys.exit(main())
