"""Train a world model from engine recordings: the frame autoencoder, then the dynamics transformer.

    python -m worldmodel.train --config assets/configs/model_default.yaml --data data/arena_train --out runs/m1
    python -m worldmodel.train --out runs/m1 --resume                        # after a kill, carry on
    torchrun --nproc_per_node=2 -m worldmodel.train --config ... --out ...   # data-parallel (gloo on CPU)
    python -m worldmodel.train ... --device cuda                              # on a GPU (bf16 autocast)
    torchrun --nproc_per_node=8 -m worldmodel.train ... --device cuda         # one GPU per rank (NCCL)

`--device auto` (the default) trains on CUDA when torch sees a GPU, else on the CPU. Under torchrun each rank
takes the GPU of its LOCAL_RANK and the ranks all-reduce over NCCL; on the CPU over gloo.

Stage 1 fits the autoencoder on single frames (RGB + depth when the data has it). Its latents are then
computed once for every frame, together with a memory image per frame (earlier ground-truth frames
reprojected into that frame's camera, the stand-in for the splat memory), and stage 2 trains the
dynamics on clips of latents with the flow-matching objective (Diffusion Forcing noise levels), the
memory dropped at random so the model also works without it, and the ego-motion head when poses exist.

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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml

from engine.cli import SetError, parse_set
from worldmodel.autoencoder import AutoencoderLoss, FrameAutoencoder
from worldmodel.checkpoint import (CheckpointError, check_memory_settings, load_state, module_hash, save_model,
                                   read_progress, save_state, state_path)
from worldmodel.config import ConfigError, ModelConfig, _build, _plain
from worldmodel.data import (DataError, FrameStore, check_actions, find_recordings, frames_to_tensor,
                             memory_sources, recordings_key, reproject)
from worldmodel.device import DEVICE_CHOICES, DeviceError, resolve_device
from worldmodel.dynamics import DynamicsTransformer
from worldmodel.flow import FlowMatching


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
    # Stage 2: dynamics on clips of latents.
    steps: int = 4000
    batch_size: int = 8
    clip_frames: int = 12
    lr: float = 5e-4
    warmup: int = 200
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    # Memory input: probability a frame gets its memory image, and how it is built.
    memory_prob: float = 0.5
    # "reproject": earlier frames of the episode forward-splatted into the frame's camera (cheap, sharp);
    # "splat": each episode streamed through splat.SceneMemory exactly as the dream does (render at the
    # frame's camera, then insert the frame), so the model learns the real memory's look and its errors;
    # "splat_predicted": the same, but the frames streamed in are the init_from model's own one-step
    # predictions (ground-truth context, decoded RGB + depth), the kind of frame the dream feeds its memory.
    memory_mode: str = "reproject"
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

    def __post_init__(self) -> None:
        self._check_ranges()
        if self.memory_mode not in ("reproject", "splat", "splat_predicted"):
            raise ConfigError(f"train.memory_mode: {self.memory_mode!r} is not one of 'reproject', 'splat', 'splat_predicted'")
        if self.memory_mode == "splat_predicted" and not self.init_from:
            raise ConfigError("train.memory_mode: 'splat_predicted' streams a trained model's own predictions: set train.init_from")
        if isinstance(self.bf16, str) and self.bf16 != "auto":
            raise ConfigError(f"train.bf16: {self.bf16!r} is not one of true, false, 'auto'")
        try:
            FlowMatching(pure_noise_prob=self.pure_noise_prob)
        except ValueError as e:
            raise ConfigError(f"train.pure_noise_prob: {e}") from None
        try:
            check_memory_settings(self.memory, "train.memory")
        except CheckpointError as e:
            raise ConfigError(str(e)) from None

    def _check_ranges(self) -> None:
        """Every number in range (finite, and e.g. a learning rate > 0), each error naming the key and what to do,
        so a bad value stops the run before the autoencoder stage instead of crashing (or training garbage) after it."""
        def bad(key: str, why: str) -> ConfigError:
            return ConfigError(f"train.{key} = {getattr(self, key)!r} {why}")

        for key in ("ae_lr", "lr", "grad_clip"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise bad(key, "must be a finite number > 0")
        for key in ("weight_decay", "memory_latent_noise", "pose_weight", "checkpoint_minutes"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise bad(key, "must be a finite number >= 0")
        for key in ("memory_prob", "pure_noise_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:  # also false for NaN
                raise bad(key, "must be a probability in [0, 1]")
        if not 0.0 <= self.context_noise_max < 1.0:
            raise bad("context_noise_max", "must be in [0, 1)")
        for key in ("seed", "max_frames", "ae_steps", "warmup"):
            if getattr(self, key) < 0:
                raise bad(key, "must be >= 0")
        for key in ("steps", "ae_batch", "batch_size", "memory_sources", "memory_max_gap", "log_every"):
            if getattr(self, key) < 1:
                raise bad(key, "must be >= 1" + (" (the dynamics trains at least one step)" if key == "steps" else ""))
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
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(data, dict) or "model" not in data:
        raise ConfigError(f"{path}: expected top-level 'model:' (and 'train:') sections")
    extra = set(data) - {"model", "train"}
    if extra:
        raise ConfigError(f"{path}: unknown top-level key(s) {sorted(extra)}; valid keys: ['model', 'train']")
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


_FORK_STORE: tuple[FrameStore, tuple[int, int]] | None = None  # the data, for forked memory-image workers


def _reproject_row(s: FrameStore, size: tuple[int, int], row: int, src: np.ndarray):
    return reproject(s.rgb[src], s.depth[src].astype(np.float32), s.c2w[src], s.K[src], s.c2w[row], s.K[row], size)


def _reproject_job(job: tuple[int, np.ndarray]):
    row, src = job
    s, size = _FORK_STORE
    return row, _reproject_row(s, size, row, src)


def average_gradients(module: torch.nn.Module, d: Dist) -> None:
    """All-reduce gradients (explicit, so the same code trains with or without DDP)."""
    if d.world == 1:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(d.world)


def apply_gradients(module: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float,
                    d: Dist | None = None) -> torch.Tensor:
    """One optimizer step on `loss` (gradients averaged over ranks, clipped); returns the gradient norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if d is not None:
        average_gradients(module, d)
    gnorm = torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
    opt.step()
    return gnorm


def memory_batch(memory_rows: torch.Tensor, cfg: "TrainConfig",
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory images of a batch of clips [B, T, C+1, h, w] as training sees them: latent noise on top (the splat
    memory is imperfect), and each frame's image kept with probability memory_prob where one exists (its
    coverage channel is not all zero). Returns (images, present [B, T] bool)."""
    mem = memory_rows.clone()
    mem[:, :, :-1] += cfg.memory_latent_noise * torch.randn_like(mem[:, :, :-1])
    present = torch.from_numpy(rng.random(mem.shape[:2]) < cfg.memory_prob).to(mem.device)
    present &= mem[:, :, -1].flatten(2).amax(-1) > 0
    return mem * present[:, :, None, None, None], present


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


# -- the trainer ---------------------------------------------------------------------------------------


class Trainer:
    """Holds the data, the two networks and the run directory; `run()` does both stages, resumably."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, out: Path, resume: bool, d: Dist,
                 progress: bool = True, workers: int = 1) -> None:
        self.mcfg, self.cfg, self.out, self.d, self.progress = model_cfg, cfg, out, d, progress and d.main
        self.workers = max(1, int(workers))
        self.state_dir = out / "state"
        if d.main:
            if out.exists() and (out / "state").exists() and not resume:
                raise FileExistsError(f"{out} already holds a training run; pass --resume to continue it, or choose a new --out")
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
            if init.config != model_cfg:
                raise ConfigError(f"train.init_from {cfg.init_from} holds a different model config than {out}'s preset")
            self.ae.load_state_dict(init.autoencoder.state_dict())
            self.dyn.load_state_dict(init.dynamics.state_dict())
            self._say(f"initialised from {cfg.init_from} (model {init.hash})")
        # The scene memory the "splat" modes build, and the dream then builds the same (model.yaml info.memory).
        own = check_memory_settings(cfg.memory, "train.memory")  # without a chosen_by note
        self.memory_settings = own or (dict(init.memory_settings) if cfg.init_from else {})
        self.init_hash = init.hash if cfg.init_from else ""
        self.step = {"autoencoder": 0, "dynamics": 0}  # the step the weights are at, per stage (model.yaml's step)

    # -- state -----------------------------------------------------------------------------------------

    def _checkpoint_due(self, last: float, last_step: bool) -> bool:
        """Whether to save now (every checkpoint_minutes, and after a stage's last step); rank 0 decides for all
        ranks, so the collective that gathers their RNG states is entered by all of them or none."""
        due = last_step or time.time() - last > 60 * self.cfg.checkpoint_minutes
        if self.d.world > 1:
            flag = torch.tensor([int(due)], device=self.device if self.device.type == "cuda" else "cpu")
            dist.broadcast(flag, src=0)
            due = bool(flag.item())
        return due

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

    # -- helpers ---------------------------------------------------------------------------------------

    def _load_data(self) -> FrameStore:
        """All frames of the data set; cached in state/ so a resumed run starts in seconds."""
        size = tuple(self.mcfg.frame_size)
        sources = [str(p) for p in find_recordings(list(self.cfg.data))]
        self.store_key = recordings_key(sources)  # the recordings' contents: both caches are keyed on it
        if self.cfg.max_frames:
            store = FrameStore.load(list(self.cfg.data), size, self.cfg.max_frames, progress=self.progress)
            self.store_key = f"{recordings_key(store.sources)}:{self.cfg.max_frames}"
            return store
        cache = self.state_dir / f"frames_{size[0]}x{size[1]}.npz"
        store = FrameStore.load_cache(cache, sources, self.store_key)
        if store is None:
            store = FrameStore.load(list(self.cfg.data), size, None, progress=self.progress)
            if self.d.main:
                self.state_dir.mkdir(parents=True, exist_ok=True)
                store.save(cache, self.store_key)
        return store

    def _say(self, text: str) -> None:
        if self.d.main:
            print(text, flush=True)

    def _frames(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames `rows` of the data, on the training device (rgb [B, 3, H, W] in [-1, 1], depth [B, 1, H, W] m)."""
        rgb = frames_to_tensor(self.store.rgb[rows]).to(self.device, non_blocking=True)
        depth = None
        if self.use_depth:
            depth = torch.from_numpy(self.store.depth[rows].astype(np.float32))[:, None].to(self.device, non_blocking=True)
        return rgb, depth

    def export(self, stage: str, step: int) -> None:
        if self.d.main:
            info = {"stage": stage, "step": step, "frames": self.store.frames, "episodes": self.store.episodes,
                    "data": list(self.cfg.data), "has_pose": self.ego is not None, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                    **self._prompt_info()}
            if self.memory_settings and self.cfg.memory_mode != "reproject":  # only what the memory images used
                info["memory"] = dict(self.memory_settings)
            save_model(self.out, self.mcfg, self.ae, self.dyn, info)

    def _prompt_info(self) -> dict[str, Any]:
        """The world the data came from: the dream starts its episodes from a real view of it."""
        from engine.recording import Recording

        meta = Recording(self.store.sources[0]).meta
        return {"prompt_world": meta.world, "prompt_config": meta.world_config, "render_size": meta.resolution}

    # -- stage 1 ---------------------------------------------------------------------------------------

    def train_autoencoder(self) -> None:
        """Stage 1. The state is final (progress `final: true`) only once the latent normalisation is fitted: a
        run killed between the last step and the fit fits it on resume."""
        cfg = self.cfg
        opt = torch.optim.AdamW(self.ae.parameters(), lr=cfg.ae_lr, weight_decay=1e-4)
        progress = self._restore("ae", self.ae, opt)
        if progress is None:
            start = 0
            self._seed_stage(1)
        else:
            start = int(progress["step"])
            if "final" not in progress:  # the old format: final when the normalisation was fitted before the save
                progress["final"] = bool(start >= cfg.ae_steps and not (
                    torch.all(self.ae.latent_shift == 0) and torch.all(self.ae.latent_scale == 1)))
        broadcast_module(self.ae, self.d)
        self.step["autoencoder"] = start
        if self.resume:
            self.log.resume_at("autoencoder", start)
        if cfg.ae_steps == 0:
            return  # fine-tuning: init_from's autoencoder, its normalisation included, is kept as it is
        if progress is not None and progress["final"]:
            if start != cfg.ae_steps:
                self._say(f"note: the run's autoencoder state is at step {start}, train.ae_steps is {cfg.ae_steps}; "
                          f"it is kept as it is")
            return
        if start >= cfg.ae_steps:
            self._finish_autoencoder(opt, start)
            return
        self._note_no_rng("ae", progress)
        loss_fn = AutoencoderLoss(depth_weight=0.5 if self.use_depth else 0.0)
        self._say(f"autoencoder: steps {start}..{cfg.ae_steps}, {self.store.frames} frames")
        from tqdm import tqdm

        bar = tqdm(range(start, cfg.ae_steps), desc="autoencoder", disable=not self.progress, initial=start, total=cfg.ae_steps)
        last_ckpt = time.time()
        ae_warmup = min(cfg.warmup, cfg.ae_steps // 10)
        self.ae.train()
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.ae_steps, cfg.ae_lr, ae_warmup)
            rows = self.rng.integers(0, self.store.frames, cfg.ae_batch)
            rgb, depth = self._frames(rows)
            with self.autocast:
                out = self.ae(rgb, depth)
                losses = loss_fn(self.ae, out, rgb, depth)
            apply_gradients(self.ae, opt, losses.total, cfg.grad_clip, self.d)
            if step % cfg.log_every == 0:
                psnr = -10 * math.log10(max(1e-10, float(((out.recon.detach()[:, :3].float().clamp(-1, 1) - rgb) ** 2).mean()) / 4))
                self.log.write("autoencoder", step, loss=losses.total.item(), rgb=losses.rgb.item(), depth=losses.depth.item(), psnr=psnr)
                bar.set_postfix(loss=f"{losses.total.item():.4f}", psnr=f"{psnr:.1f}")
            self.step["autoencoder"] = step + 1
            _hook("ae.step", step + 1)
            if self._checkpoint_due(last_ckpt, step + 1 == cfg.ae_steps):
                self._save("ae", self.ae, opt, self._progress(step + 1, cfg.ae_steps, cfg.ae_lr, ae_warmup, final=False))
                _hook("ae.saved", step + 1)
                last_ckpt = time.time()
        self._finish_autoencoder(opt, cfg.ae_steps)

    def _finish_autoencoder(self, opt: torch.optim.Optimizer, step: int) -> None:
        """Fit the latent normalisation, then declare the autoencoder state final and export the model."""
        _hook("ae.trained", step)
        self.ae.eval()
        self._fit_latent_normalization()
        ae_warmup = min(self.cfg.warmup, self.cfg.ae_steps // 10)
        self._save("ae", self.ae, opt, self._progress(step, self.cfg.ae_steps, self.cfg.ae_lr, ae_warmup, final=True))
        _hook("ae.final", step)
        self.export("autoencoder", step)

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

    @torch.no_grad()
    def _fit_latent_normalization(self) -> None:
        rows = np.random.default_rng(self.cfg.seed).integers(0, self.store.frames, min(2048, self.store.frames))
        raw = []
        for chunk in np.array_split(rows, max(1, len(rows) // 256)):
            rgb, depth = self._frames(chunk)
            z = self.ae.encode(rgb, depth).float()
            raw.append(z * self.ae.latent_scale[:, None, None] + self.ae.latent_shift[:, None, None])  # undo any earlier fit
        self.ae.fit_latent_normalization(torch.cat(raw))
        broadcast_module(self.ae, self.d)

    # -- latents and memory images ---------------------------------------------------------------------

    @torch.no_grad()
    def encode_all(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents [N, C, h, w] of every frame, and memory conditioning [N, C+1, h, w] (None without poses/depth)."""
        cache = self.state_dir / "latents.npz"
        # Keyed on what the latents are made from: the autoencoder's weights, the recordings' contents, the
        # memory settings. Any change (another autoencoder, an edited recording) rebuilds them.
        key = json.dumps({"autoencoder": module_hash(self.ae), "data": self.store_key, "frames": self.store.frames,
                          "memory_mode": self.cfg.memory_mode, "memory": self._memory_key(),
                          "use_memory": self.mcfg.dynamics.use_memory}, sort_keys=True)
        if cache.exists():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    if "key" in z.files and str(z["key"]) == key:
                        mem = torch.from_numpy(z["memory"]) if "memory" in z.files else None
                        return torch.from_numpy(z["latents"]), mem
            except (OSError, ValueError, KeyError, EOFError) as e:
                self._say(f"note: the latents cache {cache} is unreadable ({e}); encoding again")
        from tqdm import tqdm

        N = self.store.frames
        lat = torch.zeros((N, *self.mcfg.latent_shape))
        for rows in tqdm(np.array_split(np.arange(N), max(1, N // 256)), desc="encoding frames", disable=not self.progress):
            rgb, depth = self._frames(rows)
            lat[rows] = self.ae.encode(rgb, depth).float().cpu()
        memory = None
        if self.store.c2w is not None and self.store.depth is not None and self.mcfg.dynamics.use_memory:
            memory = self._memory_latents(lat)
        if self.d.main:
            arrays = {"latents": lat.numpy(), "frames": np.array(N), "memory_mode": np.array(self.cfg.memory_mode),
                      "memory_settings": np.array(self._memory_key()), "key": np.array(key)}
            if memory is not None:
                arrays["memory"] = memory.numpy()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.state_dir / "latents.tmp.npz"
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)
        _hook("latents.encoded")
        return lat, memory

    def _memory_key(self) -> str:
        """The memory settings as the latents cache records them (a change rebuilds the memory images)."""
        if self.cfg.memory_mode == "reproject":
            return "{}"
        key = dict(self.memory_settings)
        if self.cfg.memory_mode == "splat_predicted":
            key["predicted_by"] = self.init_hash  # another starting model predicts other frames
        return json.dumps(key, sort_keys=True)

    @torch.no_grad()
    def _memory_latents(self, lat: torch.Tensor) -> torch.Tensor:
        """Per frame: earlier frames of its episode reprojected into its camera, encoded, + coverage alpha."""
        from tqdm import tqdm

        s, cfg = self.store, self.cfg
        H, W = self.mcfg.frame_size
        C, h, w = self.mcfg.latent_shape
        rng = np.random.default_rng(cfg.seed + 7)
        out = torch.zeros((s.frames, C + 1, h, w))
        batch_rows: list[int] = []
        batch_rgb: list[np.ndarray] = []
        batch_depth: list[np.ndarray] = []
        batch_alpha: list[np.ndarray] = []

        def flush() -> None:
            if not batch_rows:
                return
            rgb = frames_to_tensor(np.stack(batch_rgb)).to(self.device)
            depth = torch.from_numpy(np.stack(batch_depth))[:, None].to(self.device) if self.use_depth else None
            z = self.ae.encode(rgb, depth).float()
            alpha = torch.from_numpy(np.stack(batch_alpha))[:, None].to(self.device)
            alpha = torch.nn.functional.adaptive_avg_pool2d(alpha, (h, w))
            out[batch_rows] = torch.cat([z, alpha], 1).cpu()
            batch_rows.clear(); batch_rgb.clear(); batch_depth.clear(); batch_alpha.clear()

        if cfg.memory_mode == "splat":
            renders = self._splat_memory_renders(self.store.rgb, self.store.depth)
        elif cfg.memory_mode == "splat_predicted":
            renders = self._splat_memory_renders(*self._predicted_frames(lat), predicted=True)
        else:
            renders = self._reprojected_memory(rng)
        for row, r in tqdm(renders, total=s.frames, desc=f"memory images ({cfg.memory_mode})",
                           disable=not self.progress, mininterval=2):
            batch_rows.append(row)
            batch_rgb.append(r.rgb)
            batch_depth.append(r.depth)
            batch_alpha.append(r.alpha)
            if len(batch_rows) == 256:
                flush()
        flush()
        return out

    @torch.no_grad()
    def _predicted_frames(self, lat: torch.Tensor, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Every frame as the model predicts it in one sampling step from the ground-truth frames before it
        (decoded RGB uint8 + depth in metres): blurry and imperfect like the dream's own frames, but anchored
        to the truth, so a memory built from them matches the episode's cameras. An episode's first frame
        stays the real one, as the dream's first view is."""
        from tqdm import tqdm

        from worldmodel.data import tensor_to_frames
        from worldmodel.flow import FlowSampler

        s, dyn, ae = self.store, self.dyn.eval(), self.ae.eval()
        rgb, depth = s.rgb.copy(), s.depth.astype(np.float32)
        sampler = FlowSampler(steps=1)
        gen = torch.Generator().manual_seed(self.cfg.seed + 11)
        actions = torch.from_numpy(s.actions).to(self.device)
        lat = lat.to(self.device)
        by_length: dict[int, list[int]] = {}
        for start, n in zip(s.starts, s.lengths):
            by_length.setdefault(int(n), []).append(int(start))
        bar = tqdm(total=s.frames, desc="one-step predictions", disable=not self.progress, mininterval=2)
        for n, starts in by_length.items():
            for i in range(0, len(starts), batch):
                rows = torch.tensor(starts[i:i + batch], device=self.device)
                state = dyn.new_state(len(rows))
                dyn.commit_frame(state, lat[rows].to(dyn.dtype), torch.zeros(len(rows), 8, dtype=dyn.dtype, device=self.device))
                for t in range(1, n):
                    a = actions[rows + t].to(dyn.dtype)
                    dyn.predict_pose(state, a)
                    z = sampler.sample(dyn, state, a, generator=gen, commit=False).latent
                    out = ae.decode(z.float())
                    rgb[(rows + t).cpu().numpy()] = tensor_to_frames(out.rgb)
                    depth[(rows + t).cpu().numpy()] = out.depth[:, 0].float().cpu().numpy()
                    dyn.commit_frame(state, lat[rows + t].to(dyn.dtype), a)  # teacher forcing: the truth goes on
                bar.update(len(rows) * n)
        bar.close()
        return rgb, depth

    def _reprojected_memory(self, rng: np.random.Generator):
        """(row, render) for every frame that has earlier frames: a few of them reprojected into its camera.
        The sources are drawn in order from `rng` (the same images for any `workers`); with workers > 1 the
        reprojections (numpy, ~2 ms a frame: minutes for 100k frames on one core) run in forked processes."""
        s, cfg = self.store, self.cfg
        H, W = self.mcfg.frame_size
        jobs = ((row, memory_sources(s, row, rng, cfg.memory_sources, 1, cfg.memory_max_gap)) for row in range(s.frames))
        jobs = ((row, src) for row, src in jobs if len(src))  # an episode's first frame has no memory: stays 0 (absent)
        if self.workers <= 1:
            for row, src in jobs:
                yield row, _reproject_row(s, (H, W), row, src)
            return
        import multiprocessing

        global _FORK_STORE
        _FORK_STORE = (s, (H, W))  # inherited by the forked workers: the frames are not pickled
        try:
            with multiprocessing.get_context("fork").Pool(self.workers) as pool:
                yield from pool.imap(_reproject_job, jobs, chunksize=64)
        finally:
            _FORK_STORE = None

    def _splat_memory_renders(self, rgb: np.ndarray, depth: np.ndarray, predicted: bool = False):
        """(row, render) for every frame but an episode's first: the episode so far, streamed through a
        splat.SceneMemory as the dream feeds it (first frame at tick 0; then per tick: render at the frame's
        camera, insert the frame), rendered at the frame's camera before the frame itself is inserted."""
        from splat import SceneMemory

        s = self.store
        H, W = self.mcfg.frame_size
        memory = SceneMemory(width=W, height=H, **self.memory_settings)
        ends = list(s.starts[1:]) + [s.frames]
        for start, end in zip(s.starts, ends):
            memory.reset()
            for row in range(int(start), int(end)):
                tick = row - int(start)
                if tick > 0:
                    yield row, memory.render(s.c2w[row], s.K[row], tick)
                try:
                    # splat_predicted frames are one step from the real context (age 1); splat's are real
                    age = 1 if predicted and tick > 0 else 0
                    memory.insert(rgb[row], depth[row].astype(np.float32), s.c2w[row], s.K[row], tick, source_age=age)
                except ValueError:
                    pass  # a frame with no valid depth (all sky, say) adds nothing; the dream skips it too

    # -- stage 2 ---------------------------------------------------------------------------------------

    def train_dynamics(self) -> None:
        cfg = self.cfg
        lat, memory = self.encode_all()
        # The whole latent data set lives on the training device (100k frames of the shipped recipe: ~1.8 GB
        # with their memory images): a step gathers its clips there, no host copies but the clip indices.
        dev = self.device
        lat = lat.to(dev)
        memory = memory.to(dev) if memory is not None else None
        ego = torch.from_numpy(self.ego).to(dev) if self.ego is not None else None
        actions = torch.from_numpy(self.store.actions).to(dev)
        starts = self.clip_starts
        is_start = np.zeros(self.store.frames, bool)
        is_start[self.store.starts] = True
        opt = torch.optim.AdamW(self.dyn.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
        progress = self._restore("dyn", self.dyn, opt)
        if progress is None:
            start = 0
            self._seed_stage(2)
        else:
            start = int(progress["step"])
        broadcast_module(self.dyn, self.d)
        self.step["dynamics"] = start
        if self.resume:
            self.log.resume_at("dynamics", start)
        if start >= cfg.steps:
            if start > cfg.steps:
                self._say(f"note: the run's dynamics state is at step {start}, past train.steps {cfg.steps}: "
                          f"nothing to train; the model stays at step {start}")
            return
        self._note_no_rng("dyn", progress)
        objective = FlowMatching(context_noise_max=cfg.context_noise_max, pure_noise_prob=cfg.pure_noise_prob,
                                 pose_weight=cfg.pose_weight)
        self._say(f"dynamics: steps {start}..{cfg.steps}, {len(starts)} clip starts of {cfg.clip_frames} frames, "
                  f"memory {'on' if memory is not None else 'off'}, {sum(p.numel() for p in self.dyn.parameters())/1e6:.2f}M params")
        from tqdm import tqdm

        bar = tqdm(range(start, cfg.steps), desc="dynamics", disable=not self.progress, initial=start, total=cfg.steps)
        last_ckpt = time.time()
        self.dyn.train()
        T = cfg.clip_frames
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
            rows_np = self.rng.choice(starts, cfg.batch_size)[:, None] + np.arange(T)  # [B, T]
            rows = torch.from_numpy(rows_np).to(dev)
            x0 = lat[rows]  # [B, T, C, h, w]
            act = actions[rows]
            mem = present = None
            if memory is not None:
                mem, present = memory_batch(memory[rows], cfg, self.rng)
            pose_t = pose_valid = None
            if ego is not None:
                pose_t = ego[rows]
                pose_valid = torch.from_numpy(~is_start[rows_np]).to(dev)
                pose_valid[:, 0] = False  # the clip's first frame has no earlier frame in view
            with self.autocast:
                losses = objective.loss(self.dyn, x0, act, memory=mem, memory_present=present, pose_target=pose_t,
                                        pose_valid=pose_valid)
            gnorm = apply_gradients(self.dyn, opt, losses.total, cfg.grad_clip, self.d)
            if step % cfg.log_every == 0:
                self.log.write("dynamics", step, loss=losses.total.item(), flow=losses.flow.item(), pose=losses.pose.item(),
                               grad_norm=float(gnorm), lr=opt.param_groups[0]["lr"])
                bar.set_postfix(flow=f"{losses.flow.item():.4f}", pose=f"{losses.pose.item():.4f}")
            self.step["dynamics"] = step + 1
            _hook("dyn.step", step + 1)
            if self._checkpoint_due(last_ckpt, step + 1 == cfg.steps):
                self._save("dyn", self.dyn, opt, self._progress(step + 1, cfg.steps, cfg.lr, cfg.warmup))
                _hook("dyn.saved", step + 1)
                self.export("dynamics", step + 1)
                last_ckpt = time.time()
        self.dyn.eval()

    def run(self) -> None:
        t0 = time.time()
        self.train_autoencoder()
        self.ae.eval()
        self.train_dynamics()
        self.export("dynamics", self.step["dynamics"])  # the step the weights are at (not train.steps)
        self._say(f"done in {(time.time() - t0) / 60:.1f} min at step {self.step['dynamics']}: model in {self.out} "
                  f"(play it: python play.py --world dream --checkpoint {self.out})")


RUN_CONFIG = "train.yaml"
# Keys a resumed run may change without --override-config: they change when and what is logged, not the result.
HARMLESS_KEYS = ("train.checkpoint_minutes", "train.log_every")


def write_run_config(out: Path, model_cfg: ModelConfig, cfg: TrainConfig) -> None:
    """train.yaml: the full config of the run (what --resume continues with), written atomically."""
    tmp = out / (RUN_CONFIG + ".tmp")
    tmp.write_text(yaml.safe_dump({"model": model_cfg.to_dict(), "train": _plain(asdict(cfg))}, sort_keys=False))
    os.replace(tmp, out / RUN_CONFIG)


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


def resolve_config(config: Path | None, out: Path, overrides: list[str], data: list[str] | None, resume: bool,
                   override: bool, say=print) -> tuple[ModelConfig, TrainConfig]:
    """The run's config: the preset (or, resuming without --config, the run's train.yaml) + --set + --data, every
    value checked. A resumed run whose config differs from its train.yaml is refused, naming the differences,
    unless `override` (--override-config)."""
    run_yaml = out / RUN_CONFIG
    if resume and not (out / "state").exists():
        raise ConfigError(f"--resume: {out} has no training state to resume")
    if config is None:
        if not resume:
            raise ConfigError("--config is required: a preset with model: and train: sections, e.g. "
                              "assets/configs/model_tiny.yaml (only --resume may leave it out)")
        if not run_yaml.exists():
            raise ConfigError(f"--resume: {run_yaml} is missing, so the run's config is unknown; give --config")
    mcfg, tcfg = load_presets(config if config is not None else run_yaml)
    raw = _plain(asdict(tcfg))
    raw.update(parse_set(overrides, "--set", "steps=100"))
    if data:
        raw["data"] = list(data)
    tcfg = _build(TrainConfig, raw, "train", "--set/--data")
    if not tcfg.data:
        raise ConfigError("no training data: pass --data DIR (recordings from python -m engine.rollout)")
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
    p = argparse.ArgumentParser(prog="python -m worldmodel.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=None,
                   help="preset YAML with model: and train: sections (with --resume: default the run's own train.yaml)")
    p.add_argument("--data", nargs="+", default=None, help="recording directories (replace train.data)")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint, with the run's config (train.yaml)")
    p.add_argument("--override-config", action="store_true",
                   help="with --resume: accept a config (--config/--set/--data) that differs from the run's train.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a train: key, e.g. --set steps=100")
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
    try:
        mcfg, tcfg = resolve_config(args.config, args.out, args.overrides, args.data, args.resume, args.override_config,
                                    say=print if d.main else (lambda _: None))
        Trainer(mcfg, tcfg, args.out, args.resume, d, progress=not args.no_progress, workers=args.workers).run()
    except (ConfigError, DataError, CheckpointError, FileExistsError, SetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
