"""The training context (`TrainContext`): a run's set-up and the state and checkpoint helpers its stages share."""

from __future__ import annotations

import random
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from worldmodel.autoencoder import FrameAutoencoder
from worldmodel.checkpoint import load_state, read_progress, save_model, save_state, state_path
from worldmodel.config import ConfigError, ModelConfig
from worldmodel.data import DataError, check_actions
from worldmodel.dynamics import DynamicsTransformer
from worldmodel.settings import check_memory_settings
from worldmodel.training.common import (DYNAMICS_INFO_KEYS, ROLLOUT_INFO_KEYS, STOP, Dist, MetricLog, TrainConfig,
                                        TrainingStopped, _hook, bf16_is_faster, broadcast_module, lr_at, rng_state,
                                        set_rng_state, write_run_config)
from worldmodel.training.data import load_data


class TrainContext:
    """What every training stage works on: the run's configs, data, the two networks, the run directory, bf16, the
    random streams, the step each stage is at, and the state/checkpoint helpers. The stages are functions of it
    (autoencoder.train_autoencoder, decoder.sharpen_decoder, dynamics.train_dynamics,
    adversarial.adversarial_post_train; data.encode_all and memory_images for what they train on);
    training/trainer.py's Trainer runs them in order."""

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
        self.store = load_data(self)
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
            self.say(f"device: {self.device} ({torch.cuda.get_device_name(self.device)}), bf16 autocast "
                      f"{'on' if self.bf16 else 'off'}")
        elif cfg.bf16 == "auto" and self._recorded_bf16() is not None:  # a resumed run keeps its numerics
            self.bf16 = self._recorded_bf16()
            self.say(f"bf16: auto -> {'on' if self.bf16 else 'off'}, as the run chose when it started")
        else:
            self.bf16 = bf16_is_faster() if cfg.bf16 == "auto" else bool(cfg.bf16)
            if cfg.bf16 == "auto":
                self.say(f"bf16: auto -> {'on (bf16 GEMMs are faster here)' if self.bf16 else 'off (bf16 GEMMs are slower on this CPU)'}")
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
                self.say(f"note: train.init_from {cfg.init_from} has max_rel_frames {init_rel}; this run keeps its "
                          f"biases up to distance {rel}, and farther frames share that one")
            elif init.config != model_cfg:
                raise ConfigError(f"train.init_from {cfg.init_from} holds a different model config than {out}'s preset")
            self.ae.load_state_dict(init.autoencoder.state_dict())
            self.dyn.load_state_dict(dyn_state)
            self.say(f"initialised from {cfg.init_from} (model {init.hash})")
        # The scene memory the "splat" modes build, and the dream then builds the same (model.yaml info.memory).
        own = check_memory_settings(cfg.memory, "train.memory")  # without a chosen_by note
        self.memory_settings = own or (dict(init.settings.memory_settings) if cfg.init_from else {})
        self.init_hash = init.hash if cfg.init_from else ""
        self.init_info = dict(init.info) if cfg.init_from else {}
        self.init_context_noise = init.settings.context_noise if cfg.init_from else 0.0
        self.times: dict[str, list[float]] = {}  # what each part took here: [units, seconds] (the pipeline's ETA)
        self.step = {"autoencoder": 0, "decoder": 0, "dynamics": 0, "adversarial": 0}  # the step the weights are at, per stage (model.yaml's step)

    # -- state -----------------------------------------------------------------------------------------

    def checkpoint_due(self, last: float, last_step: bool) -> bool:
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

    def stop_if_asked(self, stage: str, step: int) -> None:
        """After a checkpoint taken because a signal asked to stop: TrainingStopped (every rank alike)."""
        if getattr(self, "_stop_now", False):  # in a pipeline, the pipeline's stage (base, memory) names it too
            raise TrainingStopped(f"{Path(self.out).name} ({stage})" if getattr(self, "stage_of", None) else stage, step)

    def save_stage(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer, progress: dict[str, Any]) -> None:
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

    def restore_stage(self, name: str, module: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
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

    def begin_stage(self, state: str, stage: str, module: torch.nn.Module, opt: torch.optim.Optimizer,
                     seed: int) -> int:
        """Start or resume a stage: its saved state `state` when the run has one (else fresh random streams for stage
        number `seed`), the module the same on every rank, self.step[stage] at the step it is at (on --resume the
        log's rows from that step on dropped), and a note when the state kept no random states. Returns that step."""
        progress = self.restore_stage(state, module, opt)
        if progress is None:
            self.seed_stage(seed)
        start = 0 if progress is None else int(progress["step"])
        broadcast_module(module, self.d)
        self.step[stage] = start
        if self.resume:
            self.log.resume_at(stage, start)
        self._note_no_rng(state, progress)
        return start

    def _note_no_rng(self, name: str, progress: dict[str, Any] | None) -> None:
        if progress is not None and progress.get("no_rng"):
            self.say(f"note: {state_path(self.state_dir, name)} was saved before random states were kept: the resumed "
                      "run draws other batches than an uninterrupted one would")

    def seed_stage(self, stage: int) -> None:
        """Fresh random streams for a stage started from its beginning: what it draws then depends on the seed,
        the stage and the rank only (not on what ran before it, such as a latents cache hit or miss)."""
        seed = [self.cfg.seed, stage, self.d.rank]
        torch.manual_seed(int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> 1))
        random.seed(repr(seed))
        np.random.seed(np.random.SeedSequence(seed).generate_state(4))
        self.rng = np.random.default_rng(seed)

    def progress_state(self, step: int, total: int, base_lr: float, warmup: int, **extra: Any) -> dict[str, Any]:
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

    def say(self, text: str) -> None:
        if self.d.main:
            print(text, flush=True)

    def export(self, stage: str, step: int) -> None:
        if self.d.main:
            info = {"stage": stage, "step": step, "frames": self.store.frames, "episodes": self.store.episodes,
                    "data": list(self.cfg.data), "has_pose": self.ego is not None, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                    **self.prompt_info()}
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

    def prompt_info(self) -> dict[str, Any]:
        """The world the data came from: the dream starts its episodes from a real view of it."""
        from engine.recording import Recording

        meta = Recording(self.store.sources[0]).meta
        return {"prompt_world": meta.world, "prompt_config": meta.world_config, "render_size": meta.resolution}
