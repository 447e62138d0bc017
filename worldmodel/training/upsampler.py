"""Train a model's shown-frame upsampler (worldmodel/upsampler.py), the rest of the model unchanged.

    python -m worldmodel.training.upsampler --model assets/model --data data/arena_train60 --out runs/up1
    python -m worldmodel.training.upsampler --out runs/up1 --resume        # after a kill, carry on

The data are recordings at twice the model's frame size (the arena records 128 x 128 for a 64 x 64 model). Each
training pair is a recorded frame at twice the size (the target) and, as the input, either its area-resized
frame at the model's size (what the memory shows of a real view) or that frame's autoencoder reconstruction (what
the model paints), half and half, with their depth. The loss is the autoencoder's sharpening recipe: L1, image
gradients and the focal frequency loss (Jiang et al., arXiv 2012.12821). The last `--val-episodes` recordings are
held out: every `--eval-every` steps their PSNR and sharpness against the target, next to the bilinear
upsampling's, go to RUN/log.jsonl with the CPU-hours so far. State (weights, AdamW, step, RNG) is saved to
RUN/state/up.safetensors every `--checkpoint-minutes`, and at the end the model with its upsampler to RUN/model.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from worldmodel.autoencoder import edge_loss, focal_frequency_loss
from worldmodel.checkpoint import CheckpointError, load_model, load_state, read_progress, save_model, save_state
from worldmodel.config import UpsamplerConfig
from worldmodel.data import DataError, FrameStore, area_resize, frames_to_tensor, tensor_to_frames
from worldmodel.evaluation.metrics import gradient_sum, psnr
from worldmodel.evaluation.trajectories import recordings_setup
from worldmodel.training.common import lr_at
from worldmodel.upsampler import FrameUpsampler

RUN_FILE = "upsampler.yaml"  # the run's settings (what --resume continues with)
EDGE_WEIGHT, FREQ_WEIGHT = 0.5, 200.0  # the decoder-sharpening stage's weights (training/decoder.py)
WARMUP = 100  # steps of linear warm-up before the cosine decay (training.common.lr_at)


class Pairs:
    """The training pairs of one data set, in memory: target rgb [N, 2H, 2W, 3] uint8; inputs at the model's size,
    rgb [2, N, H, W, 3] uint8 (0: area-resized truth, 1: its autoencoder reconstruction) and depth [2, N, H, W]
    float16 metres."""

    def __init__(self, model, store: FrameStore, chunk: int = 256) -> None:
        H, W = model.config.frame_size
        if store.depth is None:
            raise DataError("the upsampler trains on recordings with depth (the arena's have it)")
        self.target = store.rgb
        self.episode = store.episode_of()
        rgb = area_resize(store.rgb, (H, W))
        depth = area_resize(store.depth.astype(np.float32)[..., None], (H, W))[..., 0]
        rec_rgb, rec_depth = np.empty_like(rgb), np.empty_like(depth)
        ae = model.autoencoder
        with torch.no_grad():
            for lo in range(0, len(rgb), chunk):
                sl = slice(lo, lo + chunk)
                out = ae.decode(ae.encode(frames_to_tensor(rgb[sl]), torch.from_numpy(depth[sl])[:, None]))
                rec_rgb[sl] = tensor_to_frames(out.rgb)
                rec_depth[sl] = out.depth[:, 0].numpy()
        self.rgb = np.stack([rgb, rec_rgb])
        self.depth = np.stack([depth, rec_depth]).astype(np.float16)

    def batch(self, ae, rows: np.ndarray, source: np.ndarray, flip: np.ndarray | None = None):
        """(rgb [B, 3, H, W], depth normalised [B, 1, H, W], target [B, 3, 2H, 2W]) tensors for rows/sources."""
        rgb = self.rgb[source, rows]
        depth = self.depth[source, rows].astype(np.float32)
        target = self.target[rows]
        if flip is not None and flip.any():
            rgb, depth, target = rgb.copy(), depth.copy(), target.copy()
            rgb[flip], depth[flip], target[flip] = rgb[flip, :, ::-1], depth[flip, :, ::-1], target[flip, :, ::-1]
        d = ae.normalize_depth(torch.from_numpy(depth)[:, None])
        return frames_to_tensor(rgb), d, frames_to_tensor(target)


def upsampler_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 + EDGE_WEIGHT x L1 of image gradients + FREQ_WEIGHT x focal frequency loss, rgb in [-1, 1]."""
    return ((pred - target).abs().mean() + EDGE_WEIGHT * edge_loss(pred, target)
            + FREQ_WEIGHT * focal_frequency_loss(pred, target))


def validate(up: FrameUpsampler, ae, pairs: Pairs, rows: np.ndarray) -> dict[str, float]:
    """PSNR (dB) and sharpness (summed gradients over the target's) of the upsampler and of bilinear upsampling on
    held-out rows, per input source (truth: the area-resized frame; recon: the autoencoder's)."""
    out: dict[str, float] = {}
    up.eval()
    with torch.no_grad():
        for s, name in ((0, "truth"), (1, "recon")):
            rgb, d, target = pairs.batch(ae, rows, np.full(len(rows), s))
            truth = tensor_to_frames(target)
            for how, frames in (("up", up.upsample(rgb, d)),
                                ("bilinear", torch.nn.functional.interpolate(rgb, scale_factor=up.config.scale,
                                                                             mode="bilinear", align_corners=False))):
                f = tensor_to_frames(frames)
                out[f"{name}_{how}_psnr"] = float(np.mean(psnr(f, truth)))
                out[f"{name}_{how}_sharpness"] = float(gradient_sum(f).sum() / gradient_sum(truth).sum())
    up.train()
    return out


def _settings(args: argparse.Namespace) -> dict:
    return {"model": str(args.model), "data": [str(d) for d in args.data], "steps": args.steps, "batch": args.batch,
            "lr": args.lr, "channels": args.channels, "blocks": args.blocks, "val_episodes": args.val_episodes,
            "seed": args.seed}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m worldmodel.training.upsampler", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="the model to give an upsampler (default assets/model)")
    ap.add_argument("--data", nargs="+", type=Path, help="recordings at twice the model's frame size")
    ap.add_argument("--out", type=Path, required=True, help="the run's folder")
    ap.add_argument("--steps", type=int, help="optimiser steps in all (default 4000; with --resume, the run's own "
                    "unless given: a larger number carries a finished run on)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--val-episodes", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--checkpoint-minutes", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="carry on the run in --out with its own settings")
    args = ap.parse_args(argv)
    run_file = args.out / RUN_FILE
    if args.resume:
        if not run_file.exists():
            print(f"error: --resume: {args.out} holds no upsampler run ({RUN_FILE} is missing); start one without "
                  f"--resume", file=sys.stderr)
            return 2
        saved = yaml.safe_load(run_file.read_text())
        steps = args.steps
        for k, v in saved.items():
            setattr(args, k, [Path(x) for x in v] if k == "data" else (Path(v) if k == "model" else v))
        if steps is not None and steps != args.steps:
            args.steps = steps
            run_file.write_text(yaml.safe_dump(_settings(args), sort_keys=False))
    else:
        if run_file.exists():
            print(f"error: {args.out} already holds an upsampler run: add --resume to carry it on, or choose another "
                  f"--out", file=sys.stderr)
            return 2
        args.model = args.model or Path("assets/model")
        args.steps = 4000 if args.steps is None else args.steps
        if not args.data:
            print("error: --data: name the recordings to train on (at twice the model's frame size)", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model)
    except CheckpointError as e:
        print(f"error: --model: {e}", file=sys.stderr)
        return 2
    H, W = model.config.frame_size
    cfg = UpsamplerConfig(scale=2, channels=args.channels, blocks=args.blocks)
    t_load = time.time()
    try:
        small = [r for r in recordings_setup([str(d) for d in args.data])["resolutions"] if r[0] < 2 * H or r[1] < 2 * W]
        if small:
            raise DataError(f"recordings at {small[0][1]}x{small[0][0]} are smaller than twice the model's frame "
                            f"({2 * W}x{2 * H}): the upsampler learns from frames at least that large (record with "
                            f"--set width={2 * W} --set height={2 * H})")
        store = FrameStore.load([str(d) for d in args.data], (2 * H, 2 * W), progress=True)
    except DataError as e:
        print(f"error: --data: {e}", file=sys.stderr)
        return 2
    pairs = Pairs(model, store)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.resume:  # written once the data is known good: a refused start leaves no run behind
        run_file.write_text(yaml.safe_dump(_settings(args), sort_keys=False))
    print(f"{len(pairs.target):,} frames at {2 * H}x{2 * W} and their inputs at {H}x{W} ready in "
          f"{time.time() - t_load:.0f} s", flush=True)
    ep = pairs.episode
    val_from = store.episodes - args.val_episodes
    train_rows = np.flatnonzero(ep < val_from)
    val_rows = np.flatnonzero(ep >= val_from)[::max(1, int(np.sum(ep >= val_from)) // 256)][:256]
    torch.manual_seed(args.seed)
    up = FrameUpsampler(cfg)
    opt = torch.optim.AdamW(up.parameters(), lr=args.lr, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    step, cpu_s = 0, 0.0
    state_dir = args.out / "state"
    if args.resume and read_progress(state_dir, "up") is not None:
        progress = load_state(state_dir, "up", up, opt)
        step, cpu_s = int(progress["step"]), float(progress["cpu_s"])
        rng.bit_generator.state = json.loads(progress["numpy_rng"])
        torch.set_rng_state(progress["rng"]["tensors"]["torch"])
        print(f"resumed at step {step}", flush=True)
    log = open(args.out / "log.jsonl", "a")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    def checkpoint() -> None:
        save_state(state_dir, "up", up, opt, {"step": step, "cpu_s": cpu_s,
                                              "numpy_rng": json.dumps(rng.bit_generator.state)},
                   rng={"tensors": {"torch": torch.get_rng_state()}})

    if step == 0:
        log.write(json.dumps({"step": 0, "cpu_h": 0.0, **validate(up, model.autoencoder, pairs, val_rows)}) + "\n")
        log.flush()
    last_ckpt, c0, t0 = time.time(), time.process_time(), time.time()
    up.train()
    while step < args.steps and not stop:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, WARMUP)
        rows = rng.choice(train_rows, args.batch)
        rgb, d, target = pairs.batch(model.autoencoder, rows, rng.integers(0, 2, args.batch), rng.random(args.batch) < 0.5)
        loss = upsampler_loss(up(rgb, d), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(up.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step}/{args.steps} loss {loss.item():.4f} ({(time.time() - t0) / 50:.2f} s a step)", flush=True)
            t0 = time.time()
        if step % args.eval_every == 0 or step == args.steps:
            cpu_s += time.process_time() - c0
            c0 = time.process_time()
            log.write(json.dumps({"step": step, "cpu_h": round(cpu_s / 3600, 4), "loss": loss.item(),
                                  **validate(up, model.autoencoder, pairs, val_rows)}) + "\n")
            log.flush()
        if time.time() - last_ckpt > 60 * args.checkpoint_minutes:
            checkpoint()
            last_ckpt = time.time()
    cpu_s += time.process_time() - c0
    checkpoint()
    if stop:
        print(f"stopped at step {step}: state saved in {state_dir}; carry on with --out {args.out} --resume")
        return 130
    info = dict(model.info)
    info["upsampler"] = (f"{step} steps (batch {args.batch}, lr {args.lr}) on {len(train_rows):,} frames of "
                         f"{', '.join(str(d) for d in args.data)} at {2 * H}x{2 * W}, the rest of {model.hash} "
                         f"unchanged (worldmodel/training/upsampler.py)")
    config = type(model.config)(frame_size=model.config.frame_size, autoencoder=model.config.autoencoder,
                                dynamics=model.config.dynamics, upsampler=cfg)
    save_model(args.out / "model", config, model.autoencoder, model.dynamics, info, upsampler=up)
    print(f"done at step {step} ({cpu_s / 3600:.2f} CPU-hours): model with its upsampler in {args.out / 'model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
