"""Places (the module docstring of worldmodel.evaluate, part 2): the dream as play.py runs it from a level's first real
view along the held-out kinds of engine.arena.splits (returns to the start view, standing still, walking into a wall,
the 1,000-tick walk), and the dream against itself (physics against its own picture, the dream-revisit probes, minutes
of long play). Every walk of a kind is dreamed together through the one tick."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.checkpoint import LoadedModel, load_model
from worldmodel.evaluation.baselines import geometric, mean_frame, seen_views
from worldmodel.evaluation.consistency import PhysicsAgreement, physics_agreement
from worldmodel.evaluation.dreaming import batch_dreams, dream_batch, held_out, render_size, say
from worldmodel.evaluation.metrics import FrameScores, ci95, psnr, score_frames, summarize
from worldmodel.evaluation.returns import rotation_deg
from worldmodel.evaluation.trajectories import Trajectory, play, render_actions, render_trajectory
from worldmodel.evaluation.unseen import LONG_BAND, FrameSet, band_ticks, realism_scores, reference_set
from worldmodel.motion import MotionModel
from worldmodel.tick import prompt_view


RETURN_KINDS = ("turn_360", "out_and_back", "look_up_down")
PLACE_KINDS = RETURN_KINDS + ("idle", "wall", "long_walk", "dream_revisit", "long_play")
LONG_WALK_TICKS = (250, 500, 1000)

TURN_FIRST_PASS = (10, 50)  # ticks of the 360° turn scored as "first pass": most of each frame newly seen

def _dream(world, level_seed: int, actions: list | None = None, policy=None,
           ticks: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """One dream (a DreamWorld) from a level's first real view along `actions` (or `ticks` actions of `policy`, a
    callable Observation -> Action, fed the dream's own observations): rgb [T+1, H, W, 3], c2w [T+1, 4, 4], the shown
    depth [T+1, H, W] (None without depth) and the actions [T+1, 8] (row 0 zeros). Walks known in advance go in
    batches instead (`_dream_walks`)."""
    obs, acts = play(world, level_seed, actions, policy, ticks)
    depth = np.stack([o.depth for o in obs]) if all(o.depth is not None for o in obs) else None
    return np.stack([o.rgb for o in obs]), np.stack([o.cam_to_world for o in obs]), depth, acts


def _dream_walks(model_dir: Path, model: LoadedModel, arena, level_seeds: list[int], actions: list[np.ndarray], steps: int,
                 context_noise: float | None, memory: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                                       np.ndarray]]:
    """What `_dream` gives for each level's walk, all dreamed together (`dream_batch`): from each level's first real
    view (`arena`, the test prompt world), seeded by its level seed as DreamWorld.reset seeds it, along its actions
    [T, 8]."""
    H, W = model.config.frame_size
    dreams = batch_dreams(model_dir, model, len(level_seeds), steps, context_noise, memory)
    views = [prompt_view(arena, s, H, W) for s in level_seeds]
    arrays = [np.asarray(a, np.float32).reshape(-1, 8) for a in actions]
    runs = dream_batch(dreams, views, [int(s) for s in level_seeds], arrays)
    return [(rgb, c2w, depth, np.concatenate([np.zeros((1, 8), np.float32), a]).astype(np.float32))
            for (rgb, c2w, depth), a in zip(runs, arrays)]


PHYSICS_KINDS = ("out_and_back", "wall", "long_walk")  # the place walks whose moves are judged against the picture
REVISIT_PROBES = 4  # levels (the turn_360 entries') the dream-revisit probes run on
LONG_PLAY_TICKS = 1200  # one minute at the test tick rate, per long-play scenario


def place_benchmarks(model_dir: Path, split: str = "test", render_scale: int = 2, max_entries: int | None = None,
                     steps: int = 1, context_noise: float | None = None, n_frames: int = 7,
                     kinds: tuple[str, ...] = PLACE_KINDS, device: str = "auto",
                     mean_img: np.ndarray | None = None) -> dict[str, Any]:
    """Part 2 of worldmodel.evaluate's docstring: `returns`, `idle`, `wall`, `long_walk` (those of `kinds`;
    "long_walk" with its realism band past the open loop's horizons), then `self_consistency` parts of the dream as
    play.py runs it: physics agreement on the PHYSICS_KINDS walks, the dream-revisit probes and the long play (the
    "dream_revisit" and "long_play" kinds); `timings` (s per kind) and `strip_rows` (the strip's rows of the turn and
    the out-and-back, `n_frames` frames each) for the caller. "long_play" needs "long_walk" in the same call (its
    realism per minute uses the long walks' reference frames)."""
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE
    from engine.world import make_world
    from worldmodel.dream import DreamWorld

    model = load_model(model_dir, device=device)
    H, W = model.config.frame_size
    rs = render_size(H, W, render_scale)
    prompt = {"preset": TEST_PRESET, "width": rs[1], "height": rs[0], "tick_rate": TEST_TICK_RATE}
    played = model.settings.memory
    shown = "memory_on" if played else "model"  # the dream as play.py runs it
    # the policy-driven and probe walks: the dream as play.py runs it, one at a time
    world = DreamWorld(str(model_dir), steps=steps, memory=played, prompt_config=prompt, context_noise=context_noise,
                       device=device, upsample=False)  # scored at the model's size, as the truth is
    arena = make_world("arena", **prompt)  # the first real view of every batched walk
    rules = model.settings.motion or MotionModel()
    has_depth = model.autoencoder.config.use_depth
    out: dict[str, Any] = {}
    consistency: dict[str, Any] = {}
    timings: dict[str, float] = {}
    strip_rows: list = []
    long_reference = None
    try:
        for kind in [k for k in kinds if k not in ("dream_revisit", "long_play")]:
            t_kind = time.perf_counter()
            entries = held_out(split, kind, max_entries)
            trs = [render_trajectory(e, (H, W), rs) for e in entries]
            # every entry of the kind dreamed together (the one tick, batched) along its actions, memory off and on
            walks = {v: _dream_walks(model_dir, model, arena, [e.level_seed for e in entries],
                                     [tr.actions[1:] for tr in trs], steps,
                                     context_noise, memory=v == "memory_on") for v in ("model", "memory_on")}
            runs = [(e, tr, {v: walks[v][j] for v in walks}) for j, (e, tr) in enumerate(zip(entries, trs))]
            if kind in RETURN_KINDS:
                out.setdefault("returns", {})[kind] = _returns(kind, runs)
                if kind in ("turn_360", "out_and_back"):
                    e, tr, dreams = runs[0]
                    ticks = np.linspace(0, e.return_tick, n_frames).round().astype(int)
                    strip_rows.append((f"{kind.replace('_', ' ')} {e.level_seed}, ticks {', '.join(map(str, ticks))} "
                                       f"(back at the start view at {e.return_tick})", dreams[shown][0][ticks], tr.rgb[ticks]))
            elif kind == "idle":
                out["idle"] = _idle(runs)
            elif kind == "wall":
                out["wall"] = _wall(runs)
            else:
                out["long_walk"] = _long_walk(runs, model, rs, mean_img)
                long_reference = out["long_walk"].pop("long_walk_reference", None)
            if kind in PHYSICS_KINDS and has_depth:
                dream_pa, truth_pa = PhysicsAgreement(), PhysicsAgreement()
                for _, tr, dreams in runs:
                    rgb, c2w, depth, acts = dreams[shown]
                    dream_pa += physics_agreement(depth, c2w, acts, tr.K, rules)
                    truth_pa += physics_agreement(tr.depth, tr.c2w, tr.actions, tr.K, rules)
                consistency.setdefault("physics_agreement", {})[kind] = dream_pa.to_json()
                consistency["physics_agreement"][f"truth_{kind}"] = truth_pa.to_json()
            timings[f"{kind}_s"] = round(time.perf_counter() - t_kind, 1)
            say(f"places: {kind} ({len(entries)} walks) in {timings[f'{kind}_s']:.0f} s")
        if "dream_revisit" in kinds:
            t_kind = time.perf_counter()
            walk_all = lambda seeds, acts: _dream_walks(model_dir, model, arena, seeds, acts, steps,  # noqa: E731
                                                        context_noise, memory=played)
            consistency["dream_revisit"], walk_pa = _dream_revisit(walk_all, split, max_entries, (H, W), rs, rules,
                                                                   has_depth)
            if walk_pa is not None:
                consistency.setdefault("physics_agreement", {}).update(walk_pa)
            timings["dream_revisit_s"] = round(time.perf_counter() - t_kind, 1)
            say(f"places: dream revisit in {timings['dream_revisit_s']:.0f} s")
        if "long_play" in kinds:
            t_kind = time.perf_counter()
            consistency["long_play"], play_pa = _long_play(world, split, max_entries, (H, W), rs, rules,
                                                           has_depth, long_reference)
            consistency.setdefault("physics_agreement", {}).update(play_pa)
            timings["long_play_s"] = round(time.perf_counter() - t_kind, 1)
            say(f"places: long play in {timings['long_play_s']:.0f} s")
    finally:
        world.close()
        arena.close()
    out["self_consistency"] = consistency
    out["timings"], out["strip_rows"] = timings, strip_rows
    return out


def _dream_revisit(walk_all, split: str, max_entries: int | None, size: tuple[int, int], render_size: tuple[int, int],
                   rules: MotionModel, has_depth: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The dream-revisit probes (consistency.revisit_probe_actions) from the first real view of REVISIT_PROBES
    turn_360 levels: the dream's view back at a pose against its own earlier view there, for all pairs and for those
    whose first view the real view did not show ("invented": the real first view covers < half of it at the true
    camera), beside the truth's own (its movers move); and physics agreement on the walk probe. `walk_all(level_seeds,
    actions)`: the dream as play.py runs it along those walks, all together (`_dream_walks`)."""
    from worldmodel.evaluation.consistency import dream_revisit, revisit_probe_actions

    turn, turn_pairs, walk, walk_pairs = revisit_probe_actions()
    entries = held_out(split, "turn_360", max_entries)[:REVISIT_PROBES]
    per: dict[str, list] = {"turn": [], "walk": []}
    dream_pa, truth_pa = PhysicsAgreement(), PhysicsAgreement()
    for name, actions, pairs in (("turn", turn, turn_pairs), ("walk", walk, walk_pairs)):
        dreamed = walk_all([e.level_seed for e in entries], [np.stack([a.to_array() for a in actions])] * len(entries))
        for e, (rgb, c2w, depth, acts) in zip(entries, dreamed):
            tr = render_actions(e.level_seed, actions, size, render_size, f"{name}-probe-{e.level_seed}")
            first = [t1 for t1, _ in pairs]
            cover = seen_views(tr, 0, 1, first, tr.rgb[0])[1].mean(axis=(1, 2))  # the real first view, at the true camera
            invented = [pr for pr, c in zip(pairs, cover) if c < 0.5]
            per[name].append({"level_seed": e.level_seed, "all": dream_revisit(rgb, c2w, pairs),
                              "invented": dream_revisit(rgb, c2w, invented), "truth": dream_revisit(tr.rgb, tr.c2w, pairs),
                              "first_view_coverage": round(float(cover.mean()), 3)})
            if name == "walk" and has_depth:
                dream_pa += physics_agreement(depth, c2w, acts, tr.K, rules)
                truth_pa += physics_agreement(tr.depth, tr.c2w, tr.actions, tr.K, rules)

    def pooled(rows: list, key: str) -> dict[str, Any]:
        got = [r[key] for r in rows if r[key]["psnr_db"] is not None]
        n = sum(g["pairs"] for g in got)
        db = sum(g["psnr_db"] * g["pairs"] for g in got) / n if n else None
        return {"psnr_db": db, "pairs": n, "pairs_off_pose": sum(r[key]["pairs_off_pose"] for r in rows)}

    res = {name: {"invented": pooled(rows, "invented"), "all": pooled(rows, "all"), "truth": pooled(rows, "truth"),
                  "per_level": rows} for name, rows in per.items()}
    res["probes"] = ("turn: 180° right at 6°/tick, back, right again (tick t vs 60 + t); walk: 20 ticks forward, 20 back, "
                     "20 forward (t vs 40 + t), from the real first view")
    physics = {"revisit_walk": dream_pa.to_json(), "truth_revisit_walk": truth_pa.to_json()} if has_depth else None
    return res, physics


def _long_play(world, split: str, max_entries: int | None, size: tuple[int, int], render_size: tuple[int, int],
               rules: MotionModel, has_depth: bool, reference: FrameSet | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Minutes of play on the long_walk levels: the explore policy (engine.arena.policies, fed the dream's own
    frames) on the first, the scripted pushes and returns (consistency.long_play_actions) on the last. Per scenario:
    the share of ticks inside the level's bounds (the truth's beside), physics agreement, and for the scripted one how
    far each 10 s push moved the dream's camera and the truth's; realism (KID) per minute against the long walks'
    reference frames."""
    from engine.arena.config import load_preset
    from engine.arena.level import generate_level
    from engine.arena.policies import ExplorePolicy
    from engine.arena.splits import TEST_PRESET, TEST_TICK_RATE
    from worldmodel.evaluation.consistency import inside_share, long_play_actions

    entries = held_out(split, "long_walk", max_entries)
    plans = {"explore": entries[0], "scripted": entries[-1]}
    res: dict[str, Any] = {"ticks": LONG_PLAY_TICKS}
    physics: dict[str, Any] = {}
    for name, e in plans.items():
        size_m = generate_level(load_preset(TEST_PRESET), e.level_seed).size_m
        if name == "explore":
            policy = ExplorePolicy()
            policy.reset(e.policy_seed)
            rgb, c2w, depth, acts = _dream(world, level_seed=e.level_seed, policy=policy, ticks=LONG_PLAY_TICKS)
            truth_policy = ExplorePolicy()
            truth_policy.reset(e.policy_seed)
            tr = render_actions(e.level_seed, None, size, render_size, f"explore-{e.level_seed}", policy=truth_policy,
                                ticks=LONG_PLAY_TICKS)
        else:
            actions = long_play_actions(LONG_PLAY_TICKS)
            rgb, c2w, depth, acts = _dream(world, level_seed=e.level_seed, actions=actions)
            tr = render_actions(e.level_seed, actions, size, render_size, f"scripted-{e.level_seed}")
        row: dict[str, Any] = {"level_seed": e.level_seed, "level_size_m": [float(v) for v in size_m],
                               "inside_share": inside_share(c2w, size_m), "inside_share_truth": inside_share(tr.c2w, size_m),
                               "path_m": float(np.linalg.norm(np.diff(c2w[:, [0, 2], 3], axis=0), axis=1).sum()),
                               "path_m_truth": float(np.linalg.norm(np.diff(tr.c2w[:, [0, 2], 3], axis=0), axis=1).sum())}
        if has_depth:
            physics[f"long_play_{name}"] = physics_agreement(depth, c2w, acts, tr.K, rules).to_json()
            physics[f"truth_long_play_{name}"] = physics_agreement(tr.depth, tr.c2w, tr.actions, tr.K, rules).to_json()
            row["physics_agreement"] = physics[f"long_play_{name}"]["share"]
        if name == "scripted":  # each 10 s push: how far the camera moved, dream and truth
            pushes, t = [], 1
            while t + 200 <= len(acts):
                if acts[t][0] > 0.5 and (t == 1 or acts[t - 1][0] < 0.5):
                    seg = slice(t - 1, t + 200)
                    pushes.append({"from_tick": t, "dream_m": float(np.linalg.norm(c2w[seg][-1][[0, 2], 3] - c2w[seg][0][[0, 2], 3])),
                                   "truth_m": float(np.linalg.norm(tr.c2w[seg][-1][[0, 2], 3] - tr.c2w[seg][0][[0, 2], 3]))})
                    t += 200
                else:
                    t += 1
            row["pushes"] = pushes
            row["push_error_m"] = float(np.mean([abs(p["dream_m"] - p["truth_m"]) for p in pushes])) if pushes else None
        if reference is not None:  # realism per minute of play
            per_min = int(round(60 * TEST_TICK_RATE))
            minutes = {}
            for m0 in range(0, len(rgb) - 1, per_min):
                ticks = np.arange(max(m0, 1), min(m0 + per_min, len(rgb)), LONG_BAND[2])
                blocks = ticks // 200  # 10 s of one walk per group: frames within it are not independent samples
                fs = {"model": FrameSet(rgb[ticks], blocks), "floor": FrameSet(tr.rgb[ticks], blocks)}
                got = realism_scores(fs, reference)
                minutes[str(m0 // per_min + 1)] = {"kid": got["kid"]["model"], "kid_floor": got["kid"]["floor"]}
            row["realism_per_minute"] = minutes
        res[name] = row
    return res, physics


def _returns(kind: str, runs: list) -> dict[str, Any]:
    rows, at_return, geo_return = [], {"model": [], "memory_on": []}, []
    first_pass = {"model": [], "memory_on": [], "geometric": []}
    for e, tr, dreams in runs:
        r = e.return_tick
        g = geometric(tr, [r])[0]
        row = {"level_seed": e.level_seed, "return_tick": r, "geometric": float(psnr(g, tr.rgb[r]))}
        for v, (rgb, *_) in dreams.items():
            row[v] = float(psnr(rgb[r], tr.rgb[r]))
            row[f"{v}_vs_left"] = float(psnr(rgb[r], rgb[0]))
            at_return[v].append(rgb[r])
        geo_return.append(g)
        rows.append(row)
        if kind == "turn_360":
            ticks = list(range(TURN_FIRST_PASS[0], min(TURN_FIRST_PASS[1], r) + 1))
            for v, (rgb, *_) in dreams.items():
                first_pass[v].append(score_frames(rgb[ticks], tr.rgb[ticks]))
            first_pass["geometric"].append(score_frames(geometric(tr, ticks), tr.rgb[ticks]))
    truth = np.stack([tr.rgb[e.return_tick] for e, tr, _ in runs])
    s_model, s_on, s_geo = (score_frames(np.stack(x), truth) for x in (at_return["model"], at_return["memory_on"], geo_return))
    groups = np.arange(len(runs))
    res = {"model": float(s_model.psnr.mean()), "model_memory_on": float(s_on.psnr.mean()),
           "geometric": float(s_geo.psnr.mean()),
           "model_vs_left": float(np.mean([r["model_vs_left"] for r in rows])),
           "model_memory_on_vs_left": float(np.mean([r["memory_on_vs_left"] for r in rows])),
           **{m: {"model": summarize(s_model)[m], "model_memory_on": summarize(s_on)[m],
                  "geometric": summarize(s_geo)[m]} for m in ("ssim", "lpips", "sharpness")},
           "ci95_model_minus_geometric": ci95(s_model, s_geo, groups), "per_entry": rows}
    if kind == "turn_360":
        res["first_pass"] = {"ticks": list(TURN_FIRST_PASS),
                             **{v: summarize(FrameScores.concat(s)) for v, s in first_pass.items()}}
    return res


def _idle(runs: list) -> dict[str, Any]:
    def stats(rgb: np.ndarray, c2w: np.ndarray) -> dict[str, float]:
        p0, p1 = c2w[0][:3, 3], c2w[-1][:3, 3]
        return {"frame_change_db": float(psnr(rgb[-1], rgb[0])), "flicker_db": float(psnr(rgb[1:], rgb[:-1]).mean()),
                "pose_drift_m": float(np.linalg.norm(p1 - p0)), "pose_drift_deg": float(rotation_deg(c2w[0], c2w[-1]))}

    per = {v: [stats(*d[v][:2]) for _, _, d in runs] for v in ("model", "memory_on")}
    truth = [stats(tr.rgb, tr.c2w) for _, tr, _ in runs]
    mean = lambda rows: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}  # noqa: E731
    end_model = score_frames(np.stack([d["model"][0][-1] for _, _, d in runs]), np.stack([tr.rgb[-1] for _, tr, _ in runs]))
    return {**mean(per["model"]), "memory_on": mean(per["memory_on"]), "truth": mean(truth),
            "sharpness_at_end": summarize(end_model)["sharpness"], "ticks": len(runs[0][1].rgb) - 1,
            "entries": len(runs), "per_entry": per["model"]}


def wall_in_first_view(tr: Trajectory, contact_tick: int, ahead_m: float = 0.35, tolerance_m: float = 0.5) -> bool:
    """Whether the wall the player stops at is in the trajectory's first (real) view, unoccluded: the point `ahead_m`
    beyond the eye at contact, along the walk, projects into frame 0 where frame 0's depth agrees within
    `tolerance_m`. A wall outside that view is one the dream has to invent: where it puts it is its guess."""
    eye = tr.c2w[:, :3, 3]
    walk = eye[contact_tick] - eye[0]
    if tr.K is None or np.linalg.norm(walk) < 1e-6:
        return False
    from splat.camera import project_points, world_to_camera

    point = eye[contact_tick] + walk / np.linalg.norm(walk) * ahead_m
    uv, z = project_points(point[None].astype(np.float32), world_to_camera(tr.c2w[0]), tr.K)
    (u, v), z = uv[0], float(z[0])
    H, W = tr.depth.shape[1:]
    return bool(z > 0 and 0 <= u < W and 0 <= v < H and abs(float(tr.depth[0][int(v), int(u)]) - z) < tolerance_m)


def _wall(runs: list) -> dict[str, Any]:
    res: dict[str, Any] = {}
    seen = [wall_in_first_view(tr, e.contact_tick) for e, tr, _ in runs]
    for v in ("model", "memory_on"):
        errs = [float(np.linalg.norm(d[v][1][-1][:3, 3] - tr.c2w[-1][:3, 3])) for _, tr, d in runs]
        past = [float(np.linalg.norm(d[v][1][-1][:3, 3] - d[v][1][e.contact_tick][:3, 3])) for e, _, d in runs]
        end = [float(psnr(d[v][0][-1], tr.rgb[-1])) for _, tr, d in runs]
        stats = {"stop_error_m": float(np.mean(errs)), "moved_after_contact_m": float(np.mean(past)),
                 "psnr_at_end": float(np.mean(end)), "per_entry_stop_error_m": errs,
                 # split by whether the first (real) view showed the wall; None where no entry is of that kind
                 "stop_error_m_wall_seen": float(np.mean([x for x, s in zip(errs, seen) if s])) if any(seen) else None,
                 "stop_error_m_wall_unseen": (float(np.mean([x for x, s in zip(errs, seen) if not s]))
                                              if not all(seen) else None)}
        if v == "model":
            res.update(stats)
        else:
            res["memory_on"] = stats
    e0 = runs[0][0]
    res.update({"entries": len(runs), "push_ticks": e0.ticks - e0.contact_tick, "wall_in_first_view": seen})
    return res


def _long_walk(runs: list, model: LoadedModel, render_size: tuple[int, int],
               mean_img: np.ndarray | None) -> dict[str, Any]:
    """The 1,000-tick walks: PSNR and the rest at LONG_WALK_TICKS against the truth (history, not the rule), and the
    realism band LONG_BAND (`realism`: the memory-on dream, copy-last (the first real view), the mean frame, the
    geometric baseline and the floor against other wanders on the same levels); the reference frames are kept
    (`long_walk_reference`) for the long play's realism per minute."""
    from engine.arena.splits import reference_entries

    T = min(len(tr.rgb) for _, tr, _ in runs) - 1
    ticks = [t for t in LONG_WALK_TICKS if t <= T] or [T]
    band = band_ticks(LONG_BAND, T)
    # the geometric baseline at every tick either part needs, one pass over each walk's frames
    wanted = sorted(set(ticks) | set(int(t) for t in band))
    geo = [dict(zip(wanted, geometric(tr, wanted))) for _, tr, _ in runs]
    res: dict[str, Any] = {"ticks": T, "entries": len(runs)}
    for t in ticks:
        truth = np.stack([tr.rgb[t] for _, tr, _ in runs])
        cands = {"model": np.stack([d["model"][0][t] for _, _, d in runs]),
                 "model_memory_on": np.stack([d["memory_on"][0][t] for _, _, d in runs]),
                 "geometric": np.stack([g[t] for g in geo])}
        for name, pred in cands.items():
            for metric, value in summarize(score_frames(pred, truth)).items():
                res.setdefault(metric, {}).setdefault(name, {})[str(t)] = value
    if band:
        H, W = model.config.frame_size
        ref = reference_set([render_trajectory(e, (H, W), render_size)
                             for e in reference_entries([e for e, _, _ in runs])], stride=LONG_BAND[2], group_offset=10_000)
        g = np.repeat(np.arange(len(runs)), len(band))
        has_depth = model.autoencoder.config.use_depth
        stack = lambda f: np.concatenate([f(tr, d) for _, tr, d in runs])  # noqa: E731
        mean_img = mean_img if mean_img is not None else mean_frame([tr for _, tr, _ in runs])
        sets = {"model": FrameSet(stack(lambda tr, d: d["memory_on"][0][band]), g,
                                  stack(lambda tr, d: d["memory_on"][2][band]) if has_depth else None),
                "copy_last": FrameSet(stack(lambda tr, d: np.repeat(tr.rgb[:1], len(band), 0)), g,
                                      stack(lambda tr, d: np.repeat(tr.depth[:1], len(band), 0)) if has_depth else None),
                "mean_frame": FrameSet(np.broadcast_to(mean_img, (len(g), *mean_img.shape)).copy(), g),
                "geometric": FrameSet(np.concatenate([np.stack([gj[int(t)] for t in band]) for gj in geo]), g),
                "floor": FrameSet(stack(lambda tr, d: tr.rgb[band]), g, stack(lambda tr, d: tr.depth[band]) if has_depth else None)}
        res["realism"] = realism_scores(sets, ref, None, False,
                                        float(model.autoencoder.config.max_depth) if has_depth else None)
        res["long_walk_reference"] = ref
    return res


