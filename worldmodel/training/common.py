"""What the training stages share: the `train:` config, the fault-injection hooks, the random states, the
distributed set-up (torchrun: NCCL or gloo), one optimizer step (`apply_gradients`), the metric log and the LR
schedule, the run's train.yaml, and `TrainerBase`: the trainer's set-up and the state/checkpoint helpers of its
loop (the stages in data.py, autoencoder.py, memory_images.py and dynamics.py build on it)."""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml

from worldmodel.autoencoder import FrameAutoencoder
from worldmodel.checkpoint import load_state, read_progress, save_model, save_state, state_path
from worldmodel.config import ConfigError, ModelConfig, _build, _plain, read_preset
from worldmodel.data import DataError, check_actions
from worldmodel.device import DeviceError, resolve_device
from worldmodel.dynamics import DynamicsTransformer
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


# -- the trainer's shared part -------------------------------------------------------------------------


# model.yaml info that describes a dynamics' weights (its data, how it dreams): kept when a run keeps init_from's
# dynamics (steps: 0).
DYNAMICS_INFO_KEYS = ("frames", "episodes", "data", "sampling", "memory", "fine_tune", "pose_refit", "dream", "motion",
                      "stages")
# What a student-forced run (memory_mode "rollout") keeps of init_from's info: how it dreams, the regime it trained in.
# (info.memory is the run's own memory settings, the ones its rollouts were dreamed with: set above.)
ROLLOUT_INFO_KEYS = ("sampling", "dream", "motion")


class TrainerBase:
    """The trainer's set-up (data, the two networks, the run directory, bf16) and the state/checkpoint helpers
    its stages share; worldmodel.train.Trainer combines it with the stages (data.py, autoencoder.py,
    memory_images.py, dynamics.py)."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, out: Path, resume: bool, d: Dist,
                 progress: bool = True, workers: int = 1) -> None:
        self.mcfg, self.cfg, self.out, self.d, self.progress = model_cfg, cfg, out, d, progress and d.main
        self.workers = max(1, int(workers))
        self.state_dir = out / "state"
        rel = model_cfg.dynamics.max_rel_frames
        if cfg.steps > 0 and rel > cfg.clip_frames - 1:  # before any work: such a bias would stay at its init, 0
            raise ConfigError(f"model.dynamics.max_rel_frames is {rel} but train.clip_frames is {cfg.clip_frames}: the "
                              f"biases of frame distances {cfg.clip_frames}..{rel} would never train, yet the dream "
                              f"reaches them (its attention sinks); set max_rel_frames to {cfg.clip_frames - 1} (or "
                              f"clip_frames to {rel + 1})")
        if d.main:
            if out.exists() and ((out / "state").exists() or (out / "pipeline.json").exists()) and not resume:
                raise FileExistsError(f"{out} already holds a training run; pass --resume to continue it, or choose a new --out")
            if out.exists() and not resume and any((out / f).exists() for f in ("model.yaml", "model.safetensors")):
                raise FileExistsError(f"{out} holds a model that no training run there made (model.yaml, no training "
                                      "state): training would overwrite it; choose a new --out")
            for source in cfg.data:
                if out.resolve() == Path(source).resolve() or Path(source).resolve() in out.resolve().parents:
                    raise FileExistsError(f"--out {out} is inside the training data {source}: the run would write into "
                                          "the recordings; choose an --out outside them")
            out.mkdir(parents=True, exist_ok=True)
            write_run_config(out, model_cfg, cfg)
        self.resume = resume
        self.log = MetricLog(out, d.main)
        torch.manual_seed(cfg.seed + d.rank)
        self.rng = np.random.default_rng(cfg.seed + 1000 * d.rank)
        self.store = self._load_data()
        check_actions(self.store.actions)
        self.clip_starts = self.store.clip_starts(cfg.clip_frames)  # DataError now, not after the autoencoder stage
        self.use_depth = model_cfg.autoencoder.use_depth
        if self.use_depth and self.store.depth is None:
            raise DataError("the config asks for depth (autoencoder.use_depth: true) but the recordings have none; "
                            "set use_depth: false to train on RGB only")
        if cfg.memory_mode == "rollout":
            if self.store.c2w is None or self.store.depth is None or not model_cfg.dynamics.use_memory:
                raise DataError("train.memory_mode 'rollout' dreams with the scene memory, which needs recordings with "
                                "camera poses and depth and a model with dynamics.use_memory: true; record with depth "
                                "and poses (engine.rollout does), or choose another memory_mode")
            if model_cfg.dynamics.prediction != "x0":
                raise ConfigError("train.memory_mode 'rollout' (student forcing) needs dynamics.prediction: x0")
            from worldmodel.training.rollouts import clip_starts_within, rollout_context, segment_ids

            seg = segment_ids(self.store, cfg.rollout_ticks, rollout_context(model_cfg.dynamics.window))
            try:  # a clip stays inside one dreamed segment
                self.clip_starts = clip_starts_within(seg, self.clip_starts, cfg.clip_frames)
            except ValueError as e:
                raise ConfigError(f"train.rollout_ticks = {cfg.rollout_ticks}: {e}") from None
        has_memory_images = self.store.c2w is not None and self.store.depth is not None and model_cfg.dynamics.use_memory
        if cfg.adv_steps > 0 and cfg.adv_judge == "shown" and not has_memory_images:
            raise DataError("train.adv_judge 'shown' judges frames as the memory-first dream shows them, which needs "
                            "memory images: recordings with camera poses and depth and a model with "
                            "dynamics.use_memory: true; or set adv_judge: frame")
        if cfg.adv_steps > 0 and cfg.adv_depth_anchor > 0 and not self.use_depth:
            raise ConfigError("train.adv_depth_anchor holds the sample's decoded depth, which needs a model with depth "
                              "(autoencoder.use_depth: true); or set adv_depth_anchor: 0")
        self.ego = self.store.ego_targets()
        if self.ego is None and d.main:
            print("note: the recordings have no camera poses: training without the ego-motion loss "
                  "(the dream will not move its camera, and the splat memory cannot be used)")
        self.device = d.device
        self.ae = FrameAutoencoder(model_cfg.autoencoder).to(self.device)
        self.dyn = DynamicsTransformer(model_cfg.dynamics, model_cfg.latent_shape).to(self.device)
        if self.device.type == "cuda":
            self.bf16 = cfg.bf16 == "auto" or bool(cfg.bf16)
            self._say(f"device: {self.device} ({torch.cuda.get_device_name(self.device)}), bf16 autocast "
                      f"{'on' if self.bf16 else 'off'}")
        elif cfg.bf16 == "auto" and self._recorded_bf16() is not None:  # a resumed run keeps its numerics
            self.bf16 = self._recorded_bf16()
            self._say(f"bf16: auto -> {'on' if self.bf16 else 'off'}, as the run chose when it started")
        else:
            self.bf16 = bf16_is_faster() if cfg.bf16 == "auto" else bool(cfg.bf16)
            if cfg.bf16 == "auto":
                self._say(f"bf16: auto -> {'on (bf16 GEMMs are faster here)' if self.bf16 else 'off (bf16 GEMMs are slower on this CPU)'}")
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        if cfg.init_from:  # first the starting model; on --resume the run's own checkpoints then replace it
            from worldmodel.checkpoint import load_model

            init = load_model(cfg.init_from)
            dyn_state = init.dynamics.state_dict()
            init_rel, rel = init.config.dynamics.max_rel_frames, model_cfg.dynamics.max_rel_frames
            if init.config != model_cfg and init_rel > rel and replace(
                    init.config, dynamics=replace(init.config.dynamics, max_rel_frames=rel)) == model_cfg:
                # fewer frame-distance biases than the source: frames farther than `rel` share distance rel's bias
                dyn_state["rel_bias"] = dyn_state["rel_bias"][:, : rel + 1].clone()
                self._say(f"note: train.init_from {cfg.init_from} has max_rel_frames {init_rel}; this run keeps its "
                          f"biases up to distance {rel}, and farther frames share that one")
            elif init.config != model_cfg:
                raise ConfigError(f"train.init_from {cfg.init_from} holds a different model config than {out}'s preset")
            self.ae.load_state_dict(init.autoencoder.state_dict())
            self.dyn.load_state_dict(dyn_state)
            self._say(f"initialised from {cfg.init_from} (model {init.hash})")
        # The scene memory the "splat" modes build, and the dream then builds the same (model.yaml info.memory).
        own = check_memory_settings(cfg.memory, "train.memory")  # without a chosen_by note
        self.memory_settings = own or (dict(init.settings.memory_settings) if cfg.init_from else {})
        self.init_hash = init.hash if cfg.init_from else ""
        self.init_info = dict(init.info) if cfg.init_from else {}
        self.init_context_noise = init.settings.context_noise if cfg.init_from else 0.0
        self.times: dict[str, list[float]] = {}  # what each part took here: [units, seconds] (the pipeline's ETA)
        self.step = {"autoencoder": 0, "decoder": 0, "dynamics": 0, "adversarial": 0}  # the step the weights are at, per stage (model.yaml's step)

    # -- state -----------------------------------------------------------------------------------------

    def _checkpoint_due(self, last: float, last_step: bool) -> bool:
        """Whether to save now (every checkpoint_minutes, and after a stage's last step); rank 0 decides for all
        ranks, so the collective that gathers their RNG states is entered by all of them or none."""
        stop = STOP.is_set()
        due = last_step or stop or time.time() - last > 60 * self.cfg.checkpoint_minutes
        if self.d.world > 1:
            flag = torch.tensor([int(due), int(stop)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.broadcast(flag, src=0)
            due, stop = bool(flag[0].item()), bool(flag[1].item())
        self._stop_now = stop
        return due

    def _stop_if_asked(self, stage: str, step: int) -> None:
        """After a checkpoint taken because a signal asked to stop: TrainingStopped (every rank alike)."""
        if getattr(self, "_stop_now", False):  # in a pipeline, the pipeline's stage (base, memory) names it too
            raise TrainingStopped(f"{Path(self.out).name} ({stage})" if getattr(self, "stage_of", None) else stage, step)

    def _save(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
        """The stage's state as one unit (weights, optimizer, every rank's RNG states, progress, schedule)."""
        mine = rng_state(self.rng)
        if self.d.world > 1:
            states: list[Any] = [None] * self.d.world
            dist.all_gather_object(states, mine)
        else:
            states = [mine]
        if not self.d.main:
            return
        rng = {"tensors": {f"{r}.{k}": v for r, st in enumerate(states) for k, v in st["tensors"].items()},
               "plain": {str(r): st["plain"] for r, st in enumerate(states)}}
        save_state(self.state_dir, name, module, opt, progress, rng, hook=_hook)

    def _restore(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
        """Load the stage's state if the run has one (weights, optimizer and this rank's RNG states); its progress."""
        if not (self.resume and state_path(self.state_dir, name).exists()):
            return None
        progress = load_state(self.state_dir, name, module, opt)
        rng = progress.pop("rng")
        rank = str(self.d.rank)
        if rng is not None and rank in rng["plain"]:
            tensors = {k.split(".", 1)[1]: v for k, v in rng["tensors"].items() if k.split(".", 1)[0] == rank}
            set_rng_state({"tensors": tensors, "plain": rng["plain"][rank]}, self.rng)
        elif rng is None:
            progress["no_rng"] = True
        return progress

    def _begin_stage(self, state: str, stage: str, module: torch.nn.Module, opt: torch.optim.Optimizer,
                     seed: int) -> int:
        """Start or resume a stage: its saved state `state` when the run has one (else fresh random streams for stage
        number `seed`), the module the same on every rank, self.step[stage] at the step it is at (on --resume the
        log's rows from that step on dropped), and a note when the state kept no random states. Returns that step."""
        progress = self._restore(state, module, opt)
        if progress is None:
            self._seed_stage(seed)
        start = 0 if progress is None else int(progress["step"])
        broadcast_module(module, self.d)
        self.step[stage] = start
        if self.resume:
            self.log.resume_at(stage, start)
        self._note_no_rng(state, progress)
        return start

    def _note_no_rng(self, name: str, progress: dict[str, Any] | None) -> None:
        if progress is not None and progress.get("no_rng"):
            self._say(f"note: {state_path(self.state_dir, name)} was saved before random states were kept: the resumed "
                      "run draws other batches than an uninterrupted one would")

    def _seed_stage(self, stage: int) -> None:
        """Fresh random streams for a stage started from its beginning: what it draws then depends on the seed,
        the stage and the rank only (not on what ran before it, such as a latents cache hit or miss)."""
        seed = [self.cfg.seed, stage, self.d.rank]
        torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> 1))
        random.seed(repr(seed))
        np.random.seed(np.random.SeedSequence(seed).generate_state(4))
        self.rng = np.random.default_rng(seed)

    def _progress(self, step: int, total: int, base_lr: float, warmup: int, **extra: Any) -> dict[str, Any]:
        """What a state records besides tensors and RNG: the step, the LR schedule it is on (lr_at), and whether
        bf16 autocast was on (a resumed "auto" run keeps it, rather than probing again)."""
        return {"step": step, "schedule": {"kind": "warmup_cosine", "step": step, "total": total, "base_lr": base_lr,
                                           "warmup": warmup, "next_lr": lr_at(step, total, base_lr, warmup)},
                "bf16": bool(self.bf16), "device": self.device.type} | extra

    def _recorded_bf16(self) -> bool | None:
        """bf16 as the run's latest saved state on this kind of device had it (None: no such state)."""
        if not self.resume:
            return None
        for name in ("dyn", "ae"):
            progress = read_progress(self.state_dir, name)
            if progress and "bf16" in progress and progress.get("device") == self.device.type:
                return bool(progress["bf16"])
        return None

    # -- helpers ---------------------------------------------------------------------------------------

    def dream_context_noise(self) -> float:
        """The level the dream commits its frames at: init_from's chosen context noise (model.yaml
        info.sampling), 0 when it has none (then training's context levels, U(0, context_noise_max))."""
        return self.init_context_noise

    def _say(self, text: str) -> None:
        if self.d.main:
            print(text, flush=True)

    def export(self, stage: str, step: int) -> None:
        if self.d.main:
            info = {"stage": stage, "step": step, "frames": self.store.frames, "episodes": self.store.episodes,
                    "data": list(self.cfg.data), "has_pose": self.ego is not None, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                    **self._prompt_info()}
            if self.memory_settings and self.cfg.memory_mode != "reproject":  # only what the memory images used
                info["memory"] = dict(self.memory_settings)
            cfg = self.cfg
            if cfg.steps == 0:  # init_from's dynamics kept, or post-trained: the data it was trained on and how it dreams
                info.update({k: v for k, v in self.init_info.items() if k in DYNAMICS_INFO_KEYS})
            elif cfg.memory_mode == "rollout":  # trained in init_from's own dream: it dreams as that one did
                info.update({k: v for k, v in self.init_info.items() if k in ROLLOUT_INFO_KEYS})
                info["fine_tune"] = (f"{self.step['dynamics']} steps of student forcing on its own memory-first "
                                     f"rollouts (memory_mode=rollout, rollout_ticks {cfg.rollout_ticks}, lr {cfg.lr}, "
                                     f"memory_prob {cfg.memory_prob}) from {self.init_hash}")
            if cfg.ae_steps == 0 and cfg.decoder_steps == 0 and "decoder_fine_tune" in self.init_info:
                info["decoder_fine_tune"] = self.init_info["decoder_fine_tune"]  # init_from's autoencoder, as it was
            if cfg.decoder_steps > 0:
                info["decoder_fine_tune"] = (f"{self.step['decoder']} decoder steps (encoder frozen, focal frequency "
                                             f"weight {cfg.decoder_freq_weight}, lr {cfg.decoder_lr}, batch "
                                             f"{cfg.ae_batch}) of {self.init_hash or 'this run'} on {self.store.frames} "
                                             f"frames of {', '.join(cfg.data)}")
            if cfg.adv_steps > 0:
                judged = "shown frames (memory first)" if cfg.adv_judge == "shown" else "frames"
                if cfg.adv_depth_anchor > 0:
                    judged += (f" (RGB alone; the unseen cells' depth held to {self.init_hash or 'the start'}'s, "
                               f"weight {cfg.adv_depth_anchor})")
                info["adversarial"] = (f"{self.step['adversarial']} adversarial post-training steps (R3GAN, patch "
                                       f"discriminator on decoded {judged}; weight {cfg.adv_weight}, gamma {cfg.adv_gamma}, "
                                       f"lr {cfg.adv_lr} / {cfg.adv_d_lr}, batch {cfg.batch_size} clips of "
                                       f"{cfg.clip_frames}) of {self.init_hash or 'this run'} on {self.store.frames} "
                                       f"frames of {', '.join(cfg.data)}")
            save_model(self.out, self.mcfg, self.ae, self.dyn, info)

    def _prompt_info(self) -> dict[str, Any]:
        """The world the data came from: the dream starts its episodes from a real view of it."""
        from engine.recording import Recording

        meta = Recording(self.store.sources[0]).meta
        return {"prompt_world": meta.world, "prompt_config": meta.world_config, "render_size": meta.resolution}
