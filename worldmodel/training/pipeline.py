"""From recordings to a model that dreams with its memory, in one resumable command (the presets turn it on):

    python -m worldmodel.train --preset small --data data/mine --out runs/mine
    python -m worldmodel.train --out runs/mine --resume          # after a kill: carries on where it stopped

The stages, each written to the run directory when it ends (pipeline.json), so `--resume` goes on at the first one
not finished (a stage killed half-way resumes from its own last checkpoint):

1. split: the last `val_fraction` of the recordings (at least one, when there are two or more) are held out;
   the dream's settings are chosen on them, never on the data it trains on.
2. base: the autoencoder and the dynamics (worldmodel.train's two stages) on the rest, in RUN/base.
3. memory: when the recordings have camera poses and depth, `finetune_steps` of memory fine-tune in RUN/memory:
   the memory images are the splat memory streamed over the base model's own one-step predictions
   (`memory_mode: splat_predicted`), so the model learns the memory it will dream with.
4. camera (run right after base): the camera rules (worldmodel.motion) fitted to the training recordings' poses and
   actions; the base model is then published to RUN, memory first with those rules, so a run stopped in a later
   stage leaves a model that dreams as the pipeline would (model.yaml info.stages: the stages it went through and
   `finished: false`).
5. choose: on the held-out recordings, with the open loop of worldmodel.evaluate (the dream as play.py runs it,
   memory on when there are poses and depth): first the camera (the fitted rules, or the learned ego-motion head
   when its perceptual distance (ST-LPIPS averaged over the horizons of 8 ticks and more) is lower by more than
   CAMERA_MARGIN), then the context noise from `context_noise_choices` by the selection rule
   (worldmodel.evaluation.report.select, docs/evaluation.md): the gates the recordings can measure (physics agreement
   with depth and poses) must hold, then the realism of the unseen decides (KID against the other held-out episodes),
   sharpness breaking ties; with one held-out episode there is no realism figure, and ST-LPIPS at 8+ ticks decides.
6. the chosen model is written to RUN (model.yaml + model.safetensors) with what chose it (info.*.chosen_by) and
   `info.stages.finished: true`, so `python play.py --world dream --checkpoint RUN` dreams it with the memory on.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.config import ConfigError, ModelConfig
from worldmodel.training.common import Dist, TrainConfig, play_command, write_run_config

STATE_FILE = "pipeline.json"
NO_STAGES = dict(val_fraction=0.0, finetune_steps=0, context_noise_choices=())


def split_recordings(paths: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation): the last ceil(val_fraction x n) recordings held out, at least one when n >= 2; none
    when there is only one recording (or val_fraction is 0)."""
    n = len(paths)
    k = 0 if val_fraction <= 0 or n < 2 else min(n - 1, max(1, math.ceil(val_fraction * n)))
    return paths[:n - k], paths[n - k:]


def has_camera(paths: list[Path]) -> bool:
    """Whether every recording has depth, camera poses and intrinsics (what the scene memory needs)."""
    from engine.recording import Recording

    for p in paths:
        rec = Recording(p)
        row = rec.rows[0] if rec.rows else {}
        if not (rec.meta.has_depth and row.get("cam_to_world") is not None and row.get("K") is not None):
            return False
    return True


# How much lower (ST-LPIPS) the learned ego-motion head must score than the fitted camera rules to be chosen. The
# rules keep properties the open loop does not score: no drift while idle, stops at the walls in the memory, the
# pose a return needs (the maze run's head won by 0.009 and was 3.45 m off at its return).
CAMERA_MARGIN = 0.02


def choose_camera(scores: dict[str, float]) -> str:
    """"action" (the fitted rules) unless "model" (the learned head) scores lower by more than CAMERA_MARGIN."""
    if "action" not in scores:
        return "model"
    return "model" if scores.get("model", float("inf")) < scores["action"] - CAMERA_MARGIN else "action"


def perceptual_score(report: dict[str, Any]) -> float:
    """The choice's score (lower is better): the model's ST-LPIPS averaged over horizons >= 8 (all if none are)."""
    per_h = {int(h): v for h, v in report["lpips"]["model"].items()}
    long = [v for h, v in per_h.items() if h >= 8] or list(per_h.values())
    return float(np.mean(long))


class Pipeline:
    """The staged run in `out` (see the module docstring)."""

    def __init__(self, model_cfg: ModelConfig, cfg: TrainConfig, out: Path, resume: bool, d: Dist,
                 progress: bool = True, workers: int = 1) -> None:
        if d.world > 1:
            raise ConfigError("a staged run (--preset, or train.val_fraction/finetune_steps/context_noise_choices) "
                              "runs in one process; for data-parallel training give --config with those keys at 0")
        self.mcfg, self.cfg, self.out, self.d = model_cfg, cfg, Path(out), d
        self.progress, self.workers = progress, workers
        state = self.out / STATE_FILE
        if state.exists() and not resume:
            raise FileExistsError(f"{out} already holds a training run; pass --resume to continue it, or choose a new --out")
        self.out.mkdir(parents=True, exist_ok=True)
        write_run_config(self.out, model_cfg, cfg)
        self.state: dict[str, Any] = json.loads(state.read_text()) if state.exists() else {"done": {}}

    def _say(self, text: str) -> None:
        print(text, flush=True)

    def _save_state(self) -> None:
        tmp = self.out / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.out / STATE_FILE)

    def _done(self, stage: str, **record: Any) -> None:
        self.state["done"][stage] = record
        self._save_state()

    # -- the stages ------------------------------------------------------------------------------------

    def run(self) -> Path:
        from worldmodel.data import find_recordings

        if "split" not in self.state["done"]:
            train, val = split_recordings(find_recordings(list(self.cfg.data)), self.cfg.val_fraction)
            self._done("split", train=[str(p) for p in train], validation=[str(p) for p in val])
        split = self.state["done"]["split"]
        train, val = split["train"], split["validation"]
        self._say(f"stage split: {len(train)} recording(s) to train on, {len(val)} held out to choose settings"
                  + ("" if val else " (one recording: nothing held out; the settings keep their defaults)"))
        camera = has_camera([Path(p) for p in train])
        self._say(self._eta(train, val, camera))
        base = self._train("base", replace(self.cfg, data=tuple(train), **NO_STAGES))
        model_dir = base
        # The camera rules are cheap: fitted now, so that the model published next already dreams as the final one
        # will (memory first, the fitted camera) while the later stages run, and a run stopped there is usable.
        motion = self._fit_camera(train) if camera else None
        if "choose" not in self.state["done"]:
            self._publish(base, self._provisional(camera, motion), final=False)
        if self.cfg.finetune_steps and camera:
            ft = replace(self.cfg, data=tuple(train), init_from=str(base), ae_steps=0, decoder_steps=0,
                         memory_mode="splat_predicted",
                         steps=self.cfg.finetune_steps, lr=self.cfg.finetune_lr,
                         warmup=min(self.cfg.warmup, max(1, self.cfg.finetune_steps // 10)), **NO_STAGES)
            model_dir = self._train("memory", ft)
        elif self.cfg.finetune_steps:
            self._say("stage memory: skipped (the recordings have no camera poses or depth, so no scene memory)")
        chosen = self._choose(model_dir, val, camera, motion)
        self._publish(model_dir, chosen, final=True)
        return self.out

    def _eta(self, train: list[str], val: list[str], camera: bool) -> str:
        """The ETA line of the stages still to run (training/eta.py), before the first of them starts."""
        from worldmodel.device import measure_peak_gflops
        from worldmodel.training.eta import eta_line, frames_in, preset_of, run_units

        if "frames" not in self.state:
            self.state["frames"] = {"train": frames_in(train), "validation": frames_in(val)}
            self._save_state()
        frames = self.state["frames"]
        units = run_units(self.cfg, frames["train"], len(val), camera)
        gemm = measure_peak_gflops(torch.float32) if self.d.device.type == "cpu" else None
        line = eta_line(preset_of(self.mcfg, self.cfg), units, gemm, done=set(self.state["done"]))
        return line if self.d.device.type == "cpu" else line + " (measured on the CPU; a GPU is faster)"

    @staticmethod
    def _provisional(camera: bool, motion: dict[str, Any] | None) -> dict[str, Any]:
        """How the model published after the base stage dreams: memory on and memory first with the fitted camera rules
        when the recordings have poses and depth (the choose stage may still change the camera and context noise)."""
        if not camera:
            return {}
        why = "published after the base stage, before the choose stage: the pipeline's default"
        info: dict[str, Any] = {"dream": {"camera": "action" if motion else "model", "memory_first": True,
                                          "memory": True, "chosen_by": why}}
        if motion:
            info["motion"] = motion
        return info

    def _train(self, name: str, cfg: TrainConfig) -> Path:
        from worldmodel.training.trainer import Trainer

        sub = self.out / name
        if name in self.state["done"]:
            return sub
        self._say(f"stage {name}: training in {sub}")
        trainer = Trainer(self.mcfg, cfg, sub, (sub / "state").exists(), self.d, progress=self.progress,
                          workers=self.workers)
        trainer.stage_of = str(self.out)
        t0 = time.perf_counter()
        trainer.run()
        # what the stage's parts took here ([units, seconds]): bench/bench_presets.py --training reads them
        self._done(name, seconds=round(time.perf_counter() - t0, 1), times=trainer.times)
        return sub

    def _fit_camera(self, train: list[str]) -> dict[str, Any] | None:
        """The camera rules fitted on 3/4 of the training episodes, checked on the rest, refitted on all."""
        from worldmodel.motion import fit_motion, held_out_error, recorded_camera_episodes

        if "camera" in self.state["done"]:
            return self.state["done"]["camera"].get("motion")
        t0 = time.perf_counter()
        episodes = recorded_camera_episodes(train)
        motion = None
        if len(episodes) >= 2:
            cut = max(1, len(episodes) * 3 // 4)
            try:
                check = held_out_error(fit_motion(episodes[:cut]), episodes[cut:])
                motion = {**fit_motion(episodes).to_info(), "held_out": check}
            except ValueError as e:
                self._say(f"stage camera: the camera rules could not be fitted ({e}); the learned head moves the camera")
        self._say(f"stage camera: rules {motion}" if motion else "stage camera: too few episodes for the camera rules")
        self._done("camera", motion=motion, seconds=round(time.perf_counter() - t0, 3))
        return motion

    def _candidate(self, model_dir: Path, name: str, info_update: dict[str, Any]) -> Path:
        """A copy of `model_dir`'s model with `info_update` in its model.yaml, in RUN/choose/NAME."""
        from worldmodel.checkpoint import load_model, save_loaded

        m = load_model(model_dir)
        path = self.out / "choose" / name
        save_loaded(path, m, {**m.info, **info_update})
        return path

    def _score(self, name: str, model_dir: Path, val: list[str], context_noise: float) -> float:
        self._evaluate(name, model_dir, val, context_noise)
        return self.state["scores"][name]["st_lpips"]

    def _evaluate(self, name: str, model_dir: Path, val: list[str], context_noise: float) -> dict[str, Any]:
        """The candidate's scores on the held-out recordings (evaluated once, kept in the run's state): ST-LPIPS at 8+
        ticks, PSNR, and what the selection rule reads (evaluation.report.selection_summary)."""
        from worldmodel.evaluate import evaluate
        from worldmodel.evaluation.report import selection_summary

        scores = self.state.setdefault("scores", {})
        if name not in scores or "selection" not in scores[name]:
            self._say(f"stage choose: evaluating {name} on the held-out recordings")
            t0 = time.perf_counter()
            report = evaluate(model_dir, self.out / "choose" / name / "eval", data=val, context_noise=context_noise,
                              places=False, device=str(self.d.device))
            scores[name] = {"st_lpips": perceptual_score(report),
                            "psnr": {h: round(v, 3) for h, v in report["psnr"]["model"].items()},
                            "selection": selection_summary(report), "seconds": round(time.perf_counter() - t0, 1),
                            "recordings": len(val)}
            self._save_state()
        return scores[name]

    def _choose(self, model_dir: Path, val: list[str], camera: bool,
                motion: dict[str, Any] | None) -> dict[str, Any]:
        """info entries for the published model: dream (camera, memory), motion, sampling (context noise)."""
        base_info: dict[str, Any] = {}
        if camera:
            base_info["dream"] = {"camera": "model", "memory_first": True, "memory": True}
        if "choose" in self.state["done"]:
            return self.state["done"]["choose"]
        if not val:
            if motion:
                base_info["motion"] = motion
                base_info["dream"]["camera"] = "action"
            self._done("choose", **base_info)
            return base_info
        how = (f"camera: the lowest ST-LPIPS at 8+ ticks on the held-out recordings {val} (the camera rules unless the "
               f"learned head is lower by more than {CAMERA_MARGIN})")
        cameras = {"model": dict(base_info)}
        if motion:
            cameras["action"] = {"dream": {**base_info["dream"], "camera": "action"}, "motion": motion}
        cn0 = 0.0
        best_camera = "model"
        paths = {c: self._candidate(model_dir, f"camera_{c}", info) for c, info in cameras.items()}
        if len(cameras) > 1:
            scores = {c: self._score(f"camera_{c}", paths[c], val, cn0) for c in cameras}
            best_camera = choose_camera(scores)
            self._say(f"stage choose: camera {best_camera} (ST-LPIPS {scores}; the learned head must win by "
                      f"{CAMERA_MARGIN})")
        info = dict(cameras[best_camera])
        if "dream" in info:
            info["dream"] = {**info["dream"], "chosen_by": how}
        levels = sorted(set(float(c) for c in self.cfg.context_noise_choices) | {cn0})
        if len(levels) > 1:
            from worldmodel.evaluation.report import select

            runs = {cn: self._evaluate(f"camera_{best_camera}" if cn == cn0 else f"context_noise_{cn}", paths[best_camera],
                                       val, cn) for cn in levels}
            name, why = select({str(cn): r["selection"] for cn, r in runs.items()})
            best = float(name)
            self._say(f"stage choose: context noise {best} (the selection rule, docs/evaluation.md: {why})")
            info["sampling"] = {"context_noise": best,
                                "chosen_by": f"the selection rule on the held-out recordings {val}: context noise {why}"}
        self._done("choose", **info)
        return info

    def _publish(self, model_dir: Path, chosen: dict[str, Any], final: bool) -> None:
        """The model of `model_dir` with the dream settings `chosen`, written to RUN (model.yaml info.stages says which
        stages it went through and whether the run has finished)."""
        from worldmodel.checkpoint import load_model, save_loaded

        m = load_model(model_dir)
        ran = [s for s in ("split", "base", "camera", "memory", "choose") if s in self.state["done"]]
        info = {**m.info, **chosen, "stages": {"from": model_dir.name, "ran": ran, "finished": final,
                                               "split": self.state["done"]["split"]}}
        save_loaded(self.out, m, info)
        dream = chosen.get("dream") or {}
        memory = (f"memory on{', memory first' if dream.get('memory_first') else ''}, camera "
                  f"{'rules' if dream.get('camera') == 'action' else 'head'}" if dream.get("memory")
                  else "memory off (no camera poses or depth)")
        play = f"play it: {play_command(self.out, info.get('prompt_world'))}"
        if final:
            self._say(f"done: model in {self.out} (from the {model_dir.name} stage; {memory}; {play})")
        else:
            self._say(f"stage base: published in {self.out} ({memory}); the later stages improve it; {play}")
