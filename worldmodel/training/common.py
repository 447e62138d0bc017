"""What the training stages share: the `train:` config, the fault-injection hooks, the random states, the
distributed set-up (torchrun: NCCL or gloo), one optimizer step (`apply_gradients`), the metric log and the LR
schedule, the run's train.yaml (the run's set-up and checkpoint helpers are context.py's TrainContext)."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml

from worldmodel.config import ConfigError, ModelConfig, _build, _plain, read_preset
from worldmodel.device import DeviceError, resolve_device
from worldmodel.flow import FlowMatching
from worldmodel.settings import SettingsError, check_memory_settings


MEMORY_MODES = ("reproject", "splat", "splat_predicted", "rollout")
ADV_JUDGES = ("frame", "shown")


@dataclass
class TrainConfig:
    """The `train:` section of a preset."""

    data: tuple[str, ...] = ()  # recording directories (the command line's --data replaces them)
    init_from: str = ""  # a model directory to start from (fine-tuning); ae_steps: 0 keeps its autoencoder
    seed: int = 0
    max_frames: int = 0  # 0: all frames of the data
    # Stage 1: autoencoder on frames.
    ae_steps: int = 2000
    ae_batch: int = 32
    ae_lr: float = 1e-3
    # Stage 1b: the decoder alone fine-tuned with the focal frequency loss (training/decoder.py); 0 steps: off.
    decoder_steps: int = 0
    decoder_lr: float = 5e-4
    decoder_freq_weight: float = 200.0
    # Stage 2: dynamics on clips of latents.
    steps: int = 4000
    batch_size: int = 8
    clip_frames: int = 12
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # Stage 2b: adversarial post-training of the dynamics (training/adversarial.py); 0 steps: off.
    adv_steps: int = 0
    adv_lr: float = 2e-5  # the dynamics (generator)
    adv_d_lr: float = 2e-4  # the patch discriminator
    adv_weight: float = 0.05  # the generator's adversarial loss beside its flow-matching loss (weight 1)
    adv_gamma: float = 1.0  # R1 / R2 gradient penalties (R3GAN), times gamma / 2
    # What the discriminator judges: "frame", the network's whole frame; "shown", the frame a memory-first dream shows
    # (the memory image where it covers, the network's frame elsewhere: training/adversarial.py)
    adv_judge: str = "frame"
    # > 0: appearance free, geometry anchored. The discriminator judges RGB alone, and the decoded depth of the sample
    # where the memory image does not cover is held (L1 on normalised depth, this weight) to what the frozen starting
    # dynamics paints there from the same inputs and noise (training/adversarial.py)
    adv_depth_anchor: float = 0.0
    # Memory input: probability a frame gets its memory image, and how it is built.
    memory_prob: float = 0.5
    # "reproject": earlier frames of the episode forward-splatted into the frame's camera (cheap, sharp);
    # "splat": each episode streamed through splat.SceneMemory exactly as the dream does (render at the
    # frame's camera, then insert the frame), so the model learns the real memory's look and its errors;
    # "splat_predicted": the same, but the frames streamed in are the init_from model's own one-step
    # predictions (ground-truth context, decoded RGB + depth), the kind of frame the dream feeds its memory.
    # "rollout": student forcing (training/rollouts.py): the init_from model dreams every episode memory first, as
    # play.py does, in segments of rollout_ticks from real frames; clips take their inputs (context latents and
    # memory images) from those dreams and their targets from the recordings.
    memory_mode: str = "reproject"
    rollout_ticks: int = 48
    memory_sources: int = 3
    memory_max_gap: int = 300
    memory_latent_noise: float = 0.1  # the splat memory is imperfect: noise its latent in training
    # splat.MemoryConfig fields for the "splat" modes' memory (e.g. {subsample: 1, scale_factor: 0.3}); written to
    # the model's model.yaml (info.memory) so the dream builds the same memory. {}: init_from's, else the defaults.
    memory: dict[str, Any] = field(default_factory=dict)
    context_noise_max: float = 0.1
    # Fraction of frames trained at pure noise (t = 1), where sampling starts; see FlowMatching.
    pure_noise_prob: float = 0.25
    pose_weight: float = 0.1
    # bf16 autocast: true, false, or "auto" = always on CUDA; on the CPU only where a bf16 GEMM is measured to
    # be faster than fp32 (AVX-512-BF16/AMX: ~1.5x faster training; plain AVX2: ~100x slower, emulated).
    bf16: bool | str = "auto"
    checkpoint_minutes: float = 5.0
    log_every: int = 25
    # The stages after the two networks (worldmodel/training/pipeline.py; the presets turn them on):
    val_fraction: float = 0.0  # recordings held out to choose the dream's settings on (the last ones, at least one)
    finetune_steps: int = 0  # memory fine-tune steps (memory_mode splat_predicted) when the data has poses and depth
    finetune_lr: float = 1e-4
    context_noise_choices: tuple[float, ...] = ()  # the levels tried on the held-out recordings; the best is kept

    @property
    def staged(self) -> bool:
        """Whether the run goes on past the two networks (validation split, memory fine-tune, settings chosen)."""
        return self.val_fraction > 0 or self.finetune_steps > 0 or bool(self.context_noise_choices)

    def __post_init__(self) -> None:
        self._check_ranges()
        if self.memory_mode not in MEMORY_MODES:
            raise ConfigError(f"train.memory_mode: {self.memory_mode!r} is not one of "
                              + ", ".join(repr(m) for m in MEMORY_MODES))
        if self.memory_mode in ("splat_predicted", "rollout") and not self.init_from:
            raise ConfigError(f"train.memory_mode: {self.memory_mode!r} streams a trained model's own predictions: "
                              "set train.init_from")
        if self.memory_mode == "rollout" and self.ae_steps > 0:
            raise ConfigError("train.memory_mode: 'rollout' dreams with init_from's autoencoder, so the run must keep "
                              "it: set train.ae_steps=0")
        if self.adv_judge not in ADV_JUDGES:
            raise ConfigError(f"train.adv_judge: {self.adv_judge!r} is not one of " + ", ".join(repr(j) for j in ADV_JUDGES))
        if isinstance(self.bf16, str) and self.bf16 != "auto":
            raise ConfigError(f"train.bf16: {self.bf16!r} is not one of true, false, 'auto'")
        try:
            FlowMatching(pure_noise_prob=self.pure_noise_prob)
        except ValueError as e:
            raise ConfigError(f"train.pure_noise_prob: {e}") from None
        try:
            check_memory_settings(self.memory, "train.memory")
        except SettingsError as e:
            raise ConfigError(str(e)) from None

    def _check_ranges(self) -> None:
        """Every number in range (finite, and e.g. a learning rate > 0), each error naming the key and what to do,
        so a bad value stops the run before the autoencoder stage instead of crashing (or training garbage) after it."""
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"train.{key} = {getattr(self, key)!r} {why}")

        for key in ("ae_lr", "lr", "grad_clip", "decoder_lr", "adv_lr", "adv_d_lr"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise bad(key, "must be a finite number > 0")
        for key in ("weight_decay", "memory_latent_noise", "pose_weight", "checkpoint_minutes", "decoder_freq_weight",
                    "adv_weight", "adv_gamma", "adv_depth_anchor"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise bad(key, "must be a finite number >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise bad("val_fraction", "must be in [0, 1): the share of recordings held out for choosing settings")
        if self.finetune_steps < 0 or not (math.isfinite(self.finetune_lr) and self.finetune_lr > 0):
            raise bad("finetune_steps" if self.finetune_steps < 0 else "finetune_lr", "must be >= 0 (steps) / > 0 (lr)")
        if not all(isinstance(c, (int, float)) and 0.0 <= c < 1.0 for c in self.context_noise_choices):
            raise bad("context_noise_choices", "must be a list of levels in [0, 1), e.g. [0, 0.2, 0.35]")
        for key in ("memory_prob", "pure_noise_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:  # also false for NaN
                raise bad(key, "must be a probability in [0, 1]")
        if not 0.0 <= self.context_noise_max < 1.0:
            raise bad("context_noise_max", "must be in [0, 1)")
        for key in ("seed", "max_frames", "ae_steps", "warmup", "decoder_steps", "adv_steps"):
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0")
        if self.steps < 0 or (self.steps == 0 and not self.init_from):
            raise bad("steps", "must be >= 1 (the dynamics trains at least one step), or 0 with train.init_from to keep "
                               "its dynamics (e.g. to sharpen the decoder alone)")
        for key in ("ae_batch", "batch_size", "memory_sources", "memory_max_gap", "log_every", "rollout_ticks"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1")
        if self.clip_frames < 2:
            raise bad("clip_frames", "must be >= 2 (a clip is context frames followed by the frames predicted from them)")
        if self.ae_steps == 0 and not self.init_from:
            raise bad("ae_steps", "trains no autoencoder, so set train.init_from to a model whose autoencoder to keep "
                                  "(or give ae_steps > 0)")


def bf16_is_faster(size: int = 256, repeats: int = 3) -> bool:
    """Whether a bf16 matrix product beats fp32 on this CPU (a ~50 ms probe): CPUs with AVX-512-BF16 or
    AMX run bf16 GEMMs natively; on others torch emulates them, orders of magnitude slower."""
    def best(dtype: torch.dtype) -> float:
        a = torch.randn(size, size).to(dtype)
        a @ a
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t)
        return min(times)

    return best(torch.bfloat16) < best(torch.float32)


# The named sizes for `--preset` (assets/configs/NAME.yaml), smallest first; their cost per tick: bench/bench_presets.py.
PRESETS = ("tiny", "small", "medium", "large")
PRESET_DIR = Path(__file__).resolve().parents[2] / "assets" / "configs"


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} is not one of {list(PRESETS)} (or give your own file with --config)")
    return PRESET_DIR / ("model_tiny.yaml" if name == "tiny" else f"{name}.yaml")


def load_presets(path: Path) -> tuple[ModelConfig, TrainConfig]:
    data = read_preset(path)
    model = ModelConfig.from_dict(data["model"], source=str(path))
    train = _build(TrainConfig, data.get("train") or {}, "train", str(path))
    return model, train


# -- fault injection ---------------------------------------------------------------------------------

# Test hooks: each is called with the name of a point the run passes ("ae.step", "ae.trained", "ae.final",
# "latents.encoded", "dyn.step", "dyn.saved", "ae.state_written", ...) and the step; a test kills the process
# there (tests/test_faults.py) to check that a resume from any point equals the uninterrupted run.
HOOKS: list[Any] = []


def _hook(point: str, step: int | None = None) -> None:
    for hook in HOOKS:
        hook(point, step)


# -- RNG states ----------------------------------------------------------------------------------------


def rng_state(sampler: np.random.Generator) -> dict[str, Any]:
    """This process's random state: torch (CPU and CUDA), numpy's global and the data sampler, Python's."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, t in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = t
    legacy = np.random.get_state()
    plain = {"sampler": sampler.bit_generator.state, "python": _jsonable(random.getstate()),
             "numpy": [legacy[0], legacy[1].tolist(), int(legacy[2]), int(legacy[3]), float(legacy[4])]}
    return {"tensors": tensors, "plain": plain}


def set_rng_state(state: dict[str, Any], sampler: np.random.Generator) -> None:
    """Restore what `rng_state` captured (the sampler in place)."""
    tensors, plain = state["tensors"], state["plain"]
    torch.set_rng_state(tensors["torch"].to(torch.uint8).cpu())
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8).cpu() for t in cuda[:torch.cuda.device_count()]])
    sampler.bit_generator.state = plain["sampler"]
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))


def _jsonable(obj: Any) -> Any:
    return [_jsonable(v) for v in obj] if isinstance(obj, (list, tuple)) else obj


# -- distributed ---------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "cpu") -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join a process group, NCCL with each rank on the GPU of its
    LOCAL_RANK when `device` resolves to CUDA, gloo on the CPU; otherwise a single process on `device`."""
    dev = resolve_device(device)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        if dev.type == "cuda":
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if local >= torch.cuda.device_count():
                raise DeviceError(f"LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} CUDA device(s): "
                                  f"start at most that many ranks per node")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
            dist.init_process_group("nccl", device_id=dev)
        else:
            dist.init_process_group("gloo")
        # Split the cores between the ranks rather than oversubscribing them.
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // world))
        return Dist(dist.get_rank(), world, dev)
    torch.set_num_threads(min(2, os.cpu_count() or 2))
    return Dist(device=dev)


def average_gradients(module: torch.nn.Module, d: Dist) -> None:
    """All-reduce gradients (explicit, so the same code trains with or without DDP)."""
    if d.world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(d.world)


class TrainingStopped(Exception):
    """A SIGINT or SIGTERM during a stage's steps: the stage's state was saved at `step` first (and --resume goes on
    from there)."""

    def __init__(self, stage: str, step: int) -> None:
        super().__init__(f"{stage} stopped at step {step}")
        self.stage, self.step = stage, step


# Set by worldmodel.train's signal handler: the step loop running (STOPPABLE non-empty) saves and stops at the end of
# its step; outside one (memory images, evaluation, the camera fit) the handler stops at once (KeyboardInterrupt).
STOP = threading.Event()
STOPPABLE: list[str] = []


def play_command(out: Path, prompt_world: str | None) -> str:
    """The command that plays the model in `out`: a prompt world named module:Class (one's own game) is given on the
    command line, since a model.yaml may only name registered worlds."""
    world = f" --set prompt_world={prompt_world}" if prompt_world and ":" in str(prompt_world) else ""
    return f"python play.py --world dream --checkpoint {out}{world}"


ETA_AFTER = 20  # steps a stage runs before it says how long the rest will take


def stoppable_steps(stage: str, steps: Iterable[int], say: Any = None,
                    times: dict[str, list[float]] | None = None) -> Iterator[int]:
    """Iterate a stage's steps as the stage a signal may stop gracefully; after ETA_AFTER steps, `say` one line with
    the measured time a step and the time the stage's remaining steps will take (`steps` a tqdm with a total).
    `times[stage]`: [steps, seconds] of the steps after the first (which warms up), when two or more ran."""
    STOPPABLE.append(stage)
    total = getattr(steps, "total", None)
    t0 = t1 = time.perf_counter()
    done = 0  # steps run to their end
    try:
        for k, step in enumerate(steps):
            if k == 0:
                t0 = time.perf_counter()
            elif k == 1:
                t1 = time.perf_counter()
            if k == ETA_AFTER and say is not None and total:
                per = (time.perf_counter() - t0) / k
                say(f"{stage}: {per:.3g} s a step here; the remaining {total - step:,} steps take ~"
                    f"{per * (total - step) / 60:.1f} min")
            yield step
            done = k + 1
    finally:
        STOPPABLE.remove(stage)
        if times is not None and done >= 2:
            times[stage] = [done - 1, round(time.perf_counter() - t1, 3)]


class TrainingDiverged(RuntimeError):
    """The loss or its gradients became NaN or infinite: the step is not taken and nothing is saved over the last
    checkpoint."""


def apply_gradients(module: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float,
                    d: Dist | None = None) -> torch.Tensor:
    """One optimizer step on `loss` (gradients averaged over ranks, clipped); returns the gradient norm. A non-finite
    loss or gradient raises TrainingDiverged before the weights change."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if d is not None:
        average_gradients(module, d)
    gnorm = torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    if not bool(torch.isfinite(loss.detach()).all() and torch.isfinite(gnorm)):
        raise TrainingDiverged(f"the training loss became {float(loss.detach().float().mean()):g} (gradient norm "
                               f"{float(gnorm):g}): the step was not taken and the last checkpoint is kept; lower the "
                               "learning rate (--set train.lr=...) or check the data, then --resume")
    opt.step()
    return gnorm


def broadcast_module(module: torch.nn.Module, d: Dist) -> None:
    if d.world > 1:
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


# -- logging -------------------------------------------------------------------------------------------


class MetricLog:
    """log.jsonl always; TensorBoard too when it is installed."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.file = open(out / "log.jsonl", "a") if enabled else None
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:
                self.tb = None

    def resume_at(self, stage: str, step: int) -> None:
        """A resumed stage redoes its steps from `step`: drop the killed run's rows for them (and a row torn by
        the kill), so log.jsonl holds each step once."""
        if not self.enabled:
            return
        path = Path(self.file.name)
        self.file.close()
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not (isinstance(row, dict) and row.get("stage") == stage and int(row.get("step", -1)) >= step):
                kept.append(line)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, path)
        self.file = open(path, "a")

    def write(self, stage: str, step: int, **metrics: float) -> None:
        if not self.enabled:
            return
        row = {"stage": stage, "step": step, "time": round(time.time(), 1)} | {k: round(float(v), 6) for k, v in metrics.items()}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in metrics.items():
                self.tb.add_scalar(f"{stage}/{k}", float(v), step)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


RUN_CONFIG = "train.yaml"


def write_run_config(out: Path, model_cfg: ModelConfig, cfg: TrainConfig) -> None:
    """train.yaml: the full config of the run (what --resume continues with), written atomically."""
    tmp = out / (RUN_CONFIG + ".tmp")
    tmp.write_text(yaml.safe_dump({"model": model_cfg.to_dict(), "train": _plain(asdict(cfg))}, sort_keys=False))
    os.replace(tmp, out / RUN_CONFIG)


# model.yaml info that describes a dynamics' weights (its data, how it dreams): kept when a run keeps init_from's
# dynamics (steps: 0).
DYNAMICS_INFO_KEYS = ("frames", "episodes", "data", "sampling", "memory", "fine_tune", "pose_refit", "dream", "motion",
                      "stages")
# What a student-forced run (memory_mode "rollout") keeps of init_from's info: how it dreams, the regime it trained in.
# (info.memory is the run's own memory settings, the ones its rollouts were dreamed with: set above.)
ROLLOUT_INFO_KEYS = ("sampling", "dream", "motion")
