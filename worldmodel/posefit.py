"""Refit the ego-motion head on the model's own dreams: less camera drift.

The dream integrates the predicted ego-motion tick after tick, so a small systematic error becomes a large pose
error: the memory fine-tune's (afce4b6f) yaw ran ~0.05-0.12 deg per tick ahead of the actions and its eye sank
~1-3 mm per tick on flat ground (3 validation revisits), ~1 m and ~10 deg off after a 250-tick revisit. Teacher-forced training never shows the
pose head the features of its own long dreams, where that bias lives (the exposure bias Self Forcing trains
against). This stage dreams with the training split's actions (the ground-truth arena run by the explore policy
on training seeds, as the data was recorded), records the pose token going into the ego-motion head at every
tick, and refits the head against the true ego-motion of those ticks: the last linear layer in closed form
(ridge), or the whole two-layer head with AdamW, whichever does better on held-out episodes. Nothing else
changes: the images a dream makes are the same, only where its camera is believed to be.

    python -m worldmodel.posefit --checkpoint assets/model --out runs/posefit [--episodes 32 --ticks 400]

The episodes are split three ways: the first half fits, the next quarter selects (the ridge strength per
component, "no change" among the choices; the AdamW step count by early stopping; linear or whole head), and
the last quarter only reports: posefit.json's per-component RMSE and bias before and after are measured there,
on episodes no choice was made on. The model written is then refit on every episode with the choices made. The
refit model (model.yaml `info.pose_refit` records how) is written to --out; evaluate it with
`python -m worldmodel.evaluate` before shipping it.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.cli import Parser
from worldmodel.checkpoint import CheckpointError, load_model, save_loaded
from worldmodel.pose import ego_motion

COMPONENTS = ("dx_m", "dy_m", "dz_m", "dyaw_deg", "dpitch_deg")


def ground_truth_episode(level_seed: int, policy_seed: int, ticks: int,
                         prompt_config: dict[str, Any]) -> tuple[list, np.ndarray]:
    """The explore policy in the arena on one level: (actions [ticks], camera-to-world [ticks + 1, 4, 4])."""
    from engine.arena import ArenaWorld, ExplorePolicy

    world = ArenaWorld(**prompt_config)
    policy = ExplorePolicy()
    try:
        obs = world.reset(level_seed)
        policy.reset(policy_seed)
        actions, c2w = [], [obs.cam_to_world]
        for _ in range(ticks):
            a = policy(obs)
            obs = world.step(a)
            actions.append(a)
            c2w.append(obs.cam_to_world)
    finally:
        world.close()
    return actions, np.stack(c2w)


def dream_features(dream: Any, seed: int, actions: list) -> tuple[np.ndarray, np.ndarray]:
    """Dream along `actions` from the level's first view; per tick the pose token going into the ego-motion head
    [T, d] and what the head predicted [T, 5] (metres / degrees)."""
    dyn = dream.model.dynamics
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = dyn.pose_head.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].detach(), out.detach())))
    try:
        dream.reset(seed)
        seen.clear()
        for a in actions:
            dream.step(a)
    finally:
        hook.remove()
    if len(seen) != len(actions):
        raise RuntimeError(f"expected one pose prediction per tick ({len(actions)}), the hook saw {len(seen)}")
    tokens = torch.cat([t.reshape(-1, t.shape[-1]) for t, _ in seen]).float().numpy()
    pred = torch.cat([o.reshape(-1, o.shape[-1]) for _, o in seen]).float() * dyn.pose_scale
    return tokens, pred.double().numpy()


def train_head(head: torch.nn.Module, tokens: np.ndarray, target: np.ndarray, steps: int,
               held: tuple[np.ndarray, np.ndarray] | None = None, lr: float = 3e-4) -> tuple[int, list[float]]:
    """Fine-tune the whole ego-motion head (in place) on tokens [N, d] -> target [N, 5] (pose_scale units), full
    batch AdamW. With `held` (tokens, target): the held-out MSE every 25 steps, and the head is left at its best
    step (early stopping); returns that step and the curve."""
    x, y = torch.from_numpy(tokens).float(), torch.from_numpy(target).float()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    curve, best, best_state = [], (float("inf"), 0), None
    for step in range(steps + 1):
        if held is not None and step % 25 == 0:
            with torch.no_grad():
                mse = float(((head(torch.from_numpy(held[0]).float()) - torch.from_numpy(held[1]).float()) ** 2).mean())
            curve.append(mse)
            if mse < best[0]:
                best, best_state = (mse, step), copy.deepcopy(head.state_dict())
        if step == steps:
            break
        loss = ((head(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if best_state is not None:
        head.load_state_dict(best_state)
    return best[1], curve


def ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Least squares y ~ x W^T + b with an L2 penalty lam on W (not b): (W [out, in], b [out])."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    a = xc.T @ xc + lam * len(x) * np.eye(x.shape[1])
    w = np.linalg.solve(a, xc.T @ yc).T
    return w, my - w @ mx


def errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, dict[str, float]]:
    d = pred - truth
    return {name: {"rmse": float(np.sqrt((d[:, i] ** 2).mean())), "bias": float(d[:, i].mean())}
            for i, name in enumerate(COMPONENTS)}


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m worldmodel.posefit", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="assets/model", help="model directory to start from")
    p.add_argument("--out", required=True, help="directory for the refit model (and posefit.json)")
    p.add_argument("--episodes", type=int, default=32,
                   help="training-split levels to dream on (1/2 fit, 1/4 select, 1/4 report)")
    p.add_argument("--ticks", type=int, default=400, help="ticks per episode")
    p.add_argument("--offset", type=int, default=0, help="first training seed to use (skip this many)")
    p.add_argument("--head-steps", type=int, default=1500, help="most AdamW steps for the whole-head refit")
    args = p.parse_args(argv)
    if args.episodes < 4 or args.ticks < 10:
        p.error("--episodes must be >= 4 (half fit, a quarter selects, a quarter reports) and --ticks >= 10")
    import worldmodel  # noqa: F401  (thread settings before torch work)
    from engine.rollout import episode_seeds
    from worldmodel.dream import DreamWorld

    torch.set_num_threads(2)
    try:
        model = load_model(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if model.settings.prompt_world != "arena":
        print("error: posefit dreams along arena trajectories; this model was trained on "
              f"{model.settings.prompt_world!r}", file=sys.stderr)
        return 2
    prompt = dict(model.settings.prompt_config or {})
    # (level, policy) seed pairs exactly as `engine.rollout --split train` recorded the training data
    pairs = episode_seeds("arena", "train", args.episodes, 0, args.offset)
    seeds = [level for level, _ in pairs]
    # Half the dreams with the scene memory on, half off: the dream runs both ways.
    # On the CPU, in fp32, whatever the machine: the features are read off the dream's tensors on the host
    dreams = {on: DreamWorld(args.checkpoint, memory=on, prompt_config=prompt, device="cpu", upsample=False)
              for on in (False, True)}
    scale = model.dynamics.pose_scale.double().numpy()
    feats, truth, preds, episode = [], [], [], []
    t0 = time.perf_counter()
    try:
        for i, (seed, policy_seed) in enumerate(pairs):
            actions, c2w = ground_truth_episode(seed, policy_seed, args.ticks, prompt)
            f, pred = dream_features(dreams[i % 2 == 1], seed, actions)
            feats.append(f)
            preds.append(pred)
            truth.append(ego_motion(c2w[:-1], c2w[1:]).astype(np.float64))
            episode.append(np.full(len(f), i))
            print(f"episode {i + 1}/{len(seeds)} (seed {seed}): {len(f)} ticks, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        for d in dreams.values():
            d.close()
    x, y, y_old, ep = np.concatenate(feats), np.concatenate(truth), np.concatenate(preds), np.concatenate(episode)
    n = len(seeds)
    fit, held, shown = ep < n // 2, (ep >= n // 2) & (ep < (3 * n) // 4), ep >= (3 * n) // 4  # held: selects
    report: dict[str, Any] = {"checkpoint": args.checkpoint, "episodes": n, "ticks": args.ticks,
                              "seeds": [seeds[0], seeds[-1]], "samples": int(len(x)),
                              "episodes_fit_select_report": [int(n // 2), int((3 * n) // 4 - n // 2), int(n - (3 * n) // 4)],
                              "held_out_before": errors(y_old[shown], y[shown])}
    # Two refits, both judged on the selection episodes: (a) the last linear layer, ridge toward the current one
    # (a penalised change; strength per component, "no change" among the choices); (b) the whole two-layer head
    # fine-tuned with AdamW from its current weights, stopped at its best selection step. The better one is kept,
    # and its errors are reported on the last quarter, which no choice saw.
    head = model.dynamics.pose_head.float()
    with torch.no_grad():
        hidden = head[:-1](torch.from_numpy(x).float()).double().numpy()  # the last layer's input
    w_old, b_old = head[-1].weight.double().detach().numpy(), head[-1].bias.double().detach().numpy()
    old = lambda feats: feats @ w_old.T + b_old  # noqa: E731  (normalised units)
    target = y / scale
    lambdas = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, None)  # None: keep the current weights
    scores = {}
    for lam in lambdas:
        if lam is None:
            pred = old(hidden[held])
        else:
            dw, db = ridge(hidden[fit], target[fit] - old(hidden[fit]), lam)
            pred = old(hidden[held]) + hidden[held] @ dw.T + db
        scores[lam] = ((pred - target[held]) ** 2).mean(0)  # per component
    chosen = [min(lambdas, key=lambda lam: scores[lam][i]) for i in range(len(COMPONENTS))]
    report["linear"] = {"selection_mse_by_lambda": {str(lam): [float(v) for v in scores[lam]] for lam in lambdas},
                        "lambda": dict(zip(COMPONENTS, chosen))}

    def refit_linear(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, b = w_old.copy(), b_old.copy()
        for i, lam in enumerate(chosen):
            if lam is not None:
                dw, db = ridge(hidden[rows], (target[rows] - old(hidden[rows]))[:, i:i + 1], lam)
                w[i] += dw[0]
                b[i] += db[0]
        return w, b

    w, b = refit_linear(fit)
    linear_pred, linear_shown = ((hidden[rows] @ w.T + b) * scale for rows in (held, shown))
    start = copy.deepcopy(head.state_dict())
    best_step, curve = train_head(head, x[fit], target[fit], args.head_steps, (x[held], target[held]))
    with torch.no_grad():
        mlp_pred, mlp_shown = (head(torch.from_numpy(x[rows]).float()).double().numpy() * scale for rows in (held, shown))
    head.load_state_dict(start)
    report["mlp"] = {"selection_mse_every_25_steps": curve, "best_step": best_step}
    norm_mse = {k: float(np.mean(((p - y[held]) / scale) ** 2)) for k, p in (("linear", linear_pred), ("mlp", mlp_pred))}
    kind = min(norm_mse, key=norm_mse.get)
    report.update(selection_normalised_mse=norm_mse, kept=kind,
                  held_out_after=errors(linear_shown if kind == "linear" else mlp_shown, y[shown]))
    everything = np.ones(len(x), bool)  # the final fit uses every episode
    if kind == "linear":
        w, b = refit_linear(everything)
        with torch.no_grad():
            head[-1].weight.copy_(torch.from_numpy(w).float())
            head[-1].bias.copy_(torch.from_numpy(b).float())
    else:
        train_head(head, x, target, best_step)
    info = dict(model.info)
    info["pose_refit"] = {"from": model.hash, "episodes": len(seeds), "ticks": args.ticks,
                          "seeds": f"train split {seeds[0]}..{seeds[-1]}", "kept": kind,
                          "held_out_yaw_bias_deg": [report["held_out_before"]["dyaw_deg"]["bias"],
                                                    report["held_out_after"]["dyaw_deg"]["bias"]],
                          "how": "dynamics.pose_head refit on the model's own dreams (worldmodel.posefit)"}
    out = Path(args.out)
    save_loaded(out, model, info)
    (out / "posefit.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("kept", "selection_normalised_mse", "held_out_before", "held_out_after")},
                     indent=1))
    print(f"refit model: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
