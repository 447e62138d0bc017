"""The evaluation's metrics, baselines and report on cases whose answer is known."""

import json
from pathlib import Path

import numpy as np
import pytest

from worldmodel.evaluation.metrics import (PSNR_CAP_DB, FrameScores, paired_bootstrap, psnr, score_frames, ssim,
                                           summarize)

ROOT = Path(__file__).resolve().parent.parent


def textured(n: int = 6, size: int = 48, seed: int = 0) -> np.ndarray:
    """Frames with edges and fine texture: checkers of random colours plus pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = []
    for _ in range(n):
        cell = int(rng.integers(4, 9))
        check = ((yy // cell + xx // cell) % 2)[..., None]
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        img = np.where(check, a, b) + rng.normal(0, 12, (size, size, 3))
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(out)


def box_blur(x: np.ndarray, r: int) -> np.ndarray:
    f = x.astype(np.float64)
    pad = np.pad(f, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
    acc = sum(pad[:, dy:dy + x.shape[1], dx:dx + x.shape[2]] for dy in range(2 * r + 1) for dx in range(2 * r + 1))
    return np.clip(np.rint(acc / (2 * r + 1) ** 2), 0, 255).astype(np.uint8)


def test_the_truth_scored_as_a_model_is_perfect():
    truth = textured()
    s = summarize(score_frames(truth, truth))
    assert s["psnr"] == PSNR_CAP_DB and s["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert s["lpips"] == pytest.approx(0.0, abs=1e-7)
    assert s["sharpness"] == 1.0 and s["sharpness_hf"] == 1.0 and s["contrast_ratio"] == 1.0
    assert s["brightness_drift"] == 0.0


def test_blur_is_less_sharp_noise_is_sharper_and_brightness_drift_is_signed():
    truth = textured()
    blurred = [summarize(score_frames(box_blur(truth, r), truth, perceptual=False)) for r in (1, 2)]
    assert blurred[1]["sharpness"] < blurred[0]["sharpness"] < 0.8  # more blur, less sharp
    assert blurred[1]["sharpness_hf"] < blurred[0]["sharpness_hf"] < 0.5
    noisy = np.clip(truth + np.random.default_rng(1).normal(0, 30, truth.shape), 0, 255).astype(np.uint8)
    assert summarize(score_frames(noisy, truth, perceptual=False))["sharpness"] > 1.2
    brighter = np.clip(truth.astype(int) + 10, 0, 255).astype(np.uint8)
    drift = summarize(score_frames(brighter, truth, perceptual=False))["brightness_drift"]
    assert 5 < drift <= 10  # +10 everywhere, less where 255 clips
    flat = np.full_like(truth, 128)
    s = summarize(score_frames(flat, truth, perceptual=False))
    assert s["sharpness"] == 0.0 and s["contrast_ratio"] == pytest.approx(0.0, abs=1e-12)


def test_psnr_known_values():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    b = a.copy()
    b[1] = 255  # every pixel off by 255: MSE = 255^2, PSNR 0 dB
    assert psnr(a, b).tolist() == [PSNR_CAP_DB, 0.0]
    c = np.full((8, 8, 3), 10, np.uint8)  # off by 10: 20 log10(255 / 10)
    assert float(psnr(c, np.zeros_like(c))) == pytest.approx(20 * np.log10(25.5))
    with pytest.raises(ValueError, match="uint8"):
        psnr(a.astype(np.float32), b)


def test_ssim_golden_values():
    # Two flat images: only the luminance term is left, (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    x = np.full((1, 16, 16, 3), 51, np.uint8)  # 0.2
    y = np.full((1, 16, 16, 3), 153, np.uint8)  # 0.6
    c1 = 0.01**2
    assert float(ssim(x, y)[0]) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1), rel=1e-9)
    # Golden values from scikit-image 0.26's structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    # use_sample_covariance=False, data_range=255, channel_axis=-1), an independent implementation.
    img = textured(1, 32, seed=3)
    assert float(ssim(img, 255 - img)[0]) == pytest.approx(-0.5977790365256844, abs=1e-9)
    assert float(ssim(img, textured(1, 32, seed=4))[0]) == pytest.approx(0.06633772955947514, abs=1e-9)
    assert float(ssim(img, img)[0]) == pytest.approx(1.0)


def test_paired_bootstrap_on_a_known_difference():
    truth = textured(8)
    a = score_frames(box_blur(truth, 1), truth, perceptual=False)
    shifted = FrameScores(**{**{k: getattr(a, k) for k in a.__dataclass_fields__}, "psnr": a.psnr - 1.5})
    diff, lo, hi = paired_bootstrap(a, shifted, np.repeat(np.arange(4), 2), "psnr", n=200)
    assert diff == pytest.approx(1.5) and lo == pytest.approx(1.5) and hi == pytest.approx(1.5)
    b = score_frames(box_blur(truth, 2), truth, perceptual=False)
    diff, lo, hi = paired_bootstrap(a, b, np.repeat(np.arange(4), 2), "sharpness", n=200)
    assert lo <= diff <= hi and lo > 0  # blur radius 1 is sharper than radius 2 on every resample


def test_copy_last_and_truth_as_models_score_as_the_baseline_and_perfect():
    """score_open_loop: a "model" predicting the last real frame scores exactly the copy-last baseline, and one
    predicting the truth scores perfectly; the mean-frame baseline is the same image at every horizon."""
    from worldmodel.evaluation.openloop import score_open_loop
    from worldmodel.evaluation.trajectories import Trajectory

    trajs = [Trajectory(textured(30, 32, seed=s), np.ones((30, 32, 32), np.float32), np.tile(np.eye(4), (30, 1, 1)),
                        np.zeros((30, 8), np.float32), f"t{s}") for s in range(2)]  # no K: no geometric baseline
    starts = [(0, 3), (0, 10), (1, 5)]
    horizons = (1, 4, 8)
    copy = np.stack([np.repeat(trajs[i].rgb[t0][None], 8, 0) for i, t0 in starts])
    scores = score_open_loop(copy, trajs, starts, horizons, context=3)
    assert set(scores) == {"model", "copy_last", "mean_frame"}
    for h in map(str, horizons):
        assert summarize(scores["model"][h]) == summarize(scores["copy_last"][h])
    truth = np.stack([trajs[i].rgb[t0 + 1:t0 + 9] for i, t0 in starts])
    perfect = score_open_loop(truth, trajs, starts, horizons, context=3)
    for h in map(str, horizons):
        s = summarize(perfect["model"][h])
        assert s["psnr"] == PSNR_CAP_DB and s["sharpness"] == 1.0 and s["lpips"] == pytest.approx(0.0, abs=1e-7)
        assert summarize(perfect["mean_frame"][h])["sharpness"] < 0.5  # a mean of random checkers is a blur


def test_the_seen_baseline_shows_the_context_where_it_looks_and_the_fill_where_it_never_looked():
    """seen: the real context frames in the splat memory at the true camera. Facing what the context saw, it covers
    the frame and renders the view (> 25 dB); turned round, it saw nothing there: coverage 0 and exactly the fill."""
    from worldmodel.evaluation.openloop import score_open_loop
    from worldmodel.evaluation.baselines import mean_frame, seen
    from worldmodel.evaluation.trajectories import Trajectory

    T, S = 12, 32
    view = textured(1, S, seed=3)[0]
    c2w = np.tile(np.eye(4), (T, 1, 1))
    c2w[8:, 0, 0] = c2w[8:, 2, 2] = -1.0  # from tick 8 on the camera looks the other way (180 degrees about y)
    K = np.array([[S / 2, 0, S / 2], [0, S / 2, S / 2], [0, 0, 1]], np.float64)
    tr = Trajectory(np.repeat(view[None], T, 0), np.full((T, S, S), 5.0, np.float32), c2w, np.zeros((T, 8), np.float32),
                    "back", K)
    fill = np.full((S, S, 3), 77, np.uint8)
    frames, coverage = seen(tr, 5, 4, [6, 7, 8, 11], fill)
    assert coverage[0] > 0.95 and coverage[1] > 0.95 and psnr(frames[0], view) > 25.0
    assert coverage[2] == 0.0 and coverage[3] == 0.0 and np.array_equal(frames[2], fill)
    with pytest.raises(ValueError, match="context frames -3..2"):  # before the first frame
        seen(tr, 2, 6, [3], fill)
    with pytest.raises(ValueError, match="ticks must lie in 6..11"):
        seen(tr, 5, 4, [6, 12], fill)  # past the trajectory's end
    cov: dict[str, float] = {}
    as_scored = seen(tr, 5, 4, [6, 7, 8], mean_frame([tr]))[0]  # score_open_loop fills with the mean frame
    scores = score_open_loop(as_scored[None], [tr], [(0, 5)], (1, 2, 3), context=4, coverage=cov)
    assert set(scores) == {"model", "copy_last", "mean_frame", "geometric", "seen"}
    assert cov["3"] == 0.0 and cov["1"] > 0.95  # the seen baseline's coverage per horizon
    assert summarize(scores["model"]["1"]) == summarize(scores["seen"]["1"])  # the same frames score the same


def test_geometric_baseline_comes_back_after_a_turn_in_place():
    """The true frames lifted into the splat memory and rendered at the true camera: after a 360° turn in
    place it renders the view it left (24-27 dB on the test turns; one frame alone re-rendered gives 32), far
    better than holding the last frame, and halfway round it beats the last frame too."""
    from engine.arena.splits import held_out_entries
    from worldmodel.evaluation.baselines import geometric
    from worldmodel.evaluation.trajectories import render_trajectory

    entry = held_out_entries("test", "turn_360")[0]
    tr = render_trajectory(entry, (64, 64), (128, 128))
    r = entry.return_tick
    g = geometric(tr, [r, r // 2])
    assert float(psnr(g[0], tr.rgb[r])) > max(24.0, float(psnr(tr.rgb[r - 1], tr.rgb[r])) + 4.0)
    assert float(psnr(g[1], tr.rgb[r // 2])) > float(psnr(tr.rgb[r // 2 - 1], tr.rgb[r // 2]))
    with pytest.raises(ValueError, match="ticks must lie"):
        geometric(tr, [0])


def test_readme_and_evaluation_doc_tables_are_the_shipped_report():
    """README.md's summary and docs/evaluation.md's full table are what docs/eval_report.json generates, and that
    report scored the shipped model on the test set."""
    from worldmodel.checkpoint import load_model
    from worldmodel.evaluation.report import TABLES, tables_in

    report = json.loads((ROOT / "docs" / "eval_report.json").read_text())
    for path, kind in (("README.md", "summary"), ("docs/evaluation.md", "full")):
        found = tables_in((ROOT / path).read_text())
        assert kind in found, f"{path} has no {kind} table markers"
        for k, table in found.items():
            assert table == TABLES[k](report), f"{path}: the {k} table is stale; rerun the report's `table --write`"
    assert report["setup"]["split"] == "test" and report["setup"]["model_hash"] == load_model(ROOT / "assets" / "model").hash


def test_report_compare_is_zero_against_itself_and_refuses_other_rollouts(tmp_path):
    from worldmodel.evaluation.report import compare, main

    truth = textured(4, 32)
    per = {"groups": [0, 0, 1, 1], "model": {"1": score_frames(box_blur(truth, 1), truth, perceptual=False).to_json()}}
    rep = {"setup": {"trajectories": 2, "rollouts": 4, "horizons": [1]}, "per_rollout": per}
    out = compare(rep, rep, n=50)
    assert out["psnr"]["1"] == [0.0, 0.0, 0.0]
    other = json.loads(json.dumps(rep))
    other["setup"]["rollouts"] = 6
    with pytest.raises(ValueError, match="same rollouts"):
        compare(rep, other)
    (tmp_path / "a.json").write_text(json.dumps(rep))
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "a.json")]) == 0
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 2


def camera_path(steps: list[tuple[int, float, float]]) -> np.ndarray:
    """c2w [T+1, 4, 4] of a first-person camera from the origin facing yaw 0: each step (ticks, metres forward per
    tick, degrees of yaw per tick)."""
    from engine.plane import yaw_pitch_to_cam_to_world

    pos, yaw, out = np.array([0.0, 1.6, 0.0]), 0.0, []
    out.append(yaw_pitch_to_cam_to_world(pos, yaw, 0.0))
    for ticks, metres, degrees in steps:
        for _ in range(ticks):
            yaw += degrees
            r = np.radians(yaw)
            pos = pos + metres * np.array([np.sin(r), 0.0, -np.cos(r)])
            out.append(yaw_pitch_to_cam_to_world(pos, yaw, 0.0))
    return np.stack(out)


def test_returns_are_found_where_the_camera_comes_back_and_only_there():
    """Known answers: a 360° turn in place comes back to the start view at 345° (the first tick within 20°), and
    turning on past it is the same return; out 3 m, about face, back and about face again comes back at the tick
    the camera faces within 20° of the start; one that never comes back, or never leaves, has none."""
    from worldmodel.evaluation.returns import Return, find_returns, rotation_deg

    turn = camera_path([(2, 0, 0), (64, 0, 7.5)])  # tick 2 + k faces 7.5k degrees: 345° at k = 46, on to 480°
    assert find_returns(turn, min_gap=5) == [Return(0, 48)]
    assert find_returns(turn, min_gap=5, first_tick=49) == []  # the return began in the context: not a new one
    # out 3 m at 0.1 m a tick, about face in 10 ticks, back 3 m, about face again: 18° a tick from 180°, so 342° (18°
    # off the start) at the 9th tick of the last turn, tick 30 + 10 + 30 + 9 = 79; then standing: the same return
    out_back = camera_path([(30, 0.1, 0), (10, 0, 18), (30, 0.1, 0), (10, 0, 18), (20, 0, 0)])
    assert find_returns(out_back, min_gap=5) == [Return(0, 79)]
    assert find_returns(out_back, min_gap=5, near_deg=10) == [Return(0, 80)]  # 360° exactly
    # turn 360°, walk 2 m out, about face, walk back: a second return, 0.4 m from the start facing 180°, the view
    # first seen at 165° (tick 22); the last about face at the start continues that return
    twice = camera_path([(48, 0, 7.5), (10, 0.2, 0), (20, 0, 9), (10, 0.2, 0), (20, 0, 9)])
    assert find_returns(twice, min_gap=5) == [Return(0, 46), Return(22, 48 + 10 + 20 + 8)]
    away = camera_path([(40, 0.125, 0), (10, 0, 9), (40, 0.125, 0)])  # 5 m, turn 90°, 5 m: never back
    assert find_returns(away, min_gap=5) == []
    still = camera_path([(60, 0.0, 0.5)])  # a slow 30° pan: never leaves, so never returns
    assert find_returns(still, min_gap=5) == []
    assert rotation_deg(turn[2], turn[14]) == pytest.approx(90.0)


def test_recordings_without_poses_depth_or_returns_say_why_in_one_line():
    from worldmodel.evaluation.revisits import recorded_returns
    from worldmodel.evaluation.trajectories import Trajectory

    def traj(c2w, K=np.eye(3)):
        n = len(c2w)
        return Trajectory(np.zeros((n, 8, 8, 3), np.uint8), np.ones((n, 8, 8), np.float32), c2w,
                          np.zeros((n, 8), np.float32), "t", K)

    turn = traj(camera_path([(2, 0, 0), (30, 0, 15)]))
    found, why = recorded_returns([turn], True, min_gap=5, context=4)
    assert why is None and [r.tick for r in found[0]] == [25]
    for trajs, depth, reason in (([traj(turn.c2w, None)], True, "no camera poses"), ([turn], False, "no depth"),
                                 ([traj(camera_path([(30, 0.1, 0)]))], True, "no returns")):
        found, why = recorded_returns(trajs, depth, min_gap=5, context=4)
        assert found == {} and reason in why and "\n" not in why


def test_evaluate_data_scores_the_returns_found_in_ones_own_recordings(tmp_path):
    """evaluate --data on a recording of the plane world (depth and poses, no GL) that turns 360° in place: the
    return found in it is scored with the memory off, on, the oracle and the geometric baseline; the setup is the
    recording's world and size, and the arena's scripted places are said to be skipped."""
    from engine.rollout import rollout
    from tests.randmodel import random_model_dir
    from worldmodel.evaluate import main

    script = tmp_path / "turn.yaml"
    script.write_text("name: turn\nsteps:\n  - {wait: 2}\n  - {turn: {yaw: 360}, ticks: 24}\n  - {wait: 4}\n")
    rollout("plane", tmp_path / "rec", episodes=1, ticks=30, script=str(script), config={"width": 64, "height": 64},
            progress=False)
    model = random_model_dir(tmp_path / "model")
    out = tmp_path / "eval"
    assert main(["--checkpoint", str(model), "--data", str(tmp_path / "rec"), "--out", str(out), "--context", "4",
                 "--starts", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["setup"]["world"] == "plane" and report["setup"]["render_size"] == [64, 64]
    assert "turn_360" in report["skipped"]["places"] and "revisit" not in report["skipped"]
    rv = report["revisit"]
    row, = rv["per_trajectory"]  # 15° a tick from tick 3: 345° at tick 25, within 20° of ticks 0-2
    assert row["return_tick"] == 25 and row["earlier_tick"] == 0 and rv["thresholds"]["min_gap_ticks"] == 5
    for key in ("memory_on", "memory_off", "memory_oracle", "memory_oracle_dream_pose", "geometric"):
        assert np.isfinite(rv[key])
    assert rv["geometric"] > rv["memory_off"] + 5  # the true frames at the true camera, against random weights
    assert set(rv["lpips"]) == {"memory_off", "memory_on", "geometric"}
    assert 0 < report["memory_fidelity_coverage"] <= 1


def test_wall_in_first_view_known_cases():
    """The wall probe's split: a wall straight ahead of the first camera at the depth its frame shows is seen; the
    same wall behind something nearer, or a walk off to the side, is one the dream has to invent."""
    from worldmodel.evaluation.places import wall_in_first_view
    from worldmodel.evaluation.trajectories import Trajectory

    T = 10
    c2w = np.repeat(np.eye(4, dtype=np.float32)[None], T + 1, 0)  # OpenCV camera at the origin looking down +z
    c2w[:, 2, 3] = np.linspace(0.0, 4.65, T + 1)  # walks 4.65 m straight ahead: the wall is 0.35 m further, z = 5
    K = np.array([[32.0, 0, 32], [0, 32.0, 32], [0, 0, 1]], np.float32)

    def traj(depth_m: float, c2w=c2w) -> Trajectory:
        return Trajectory(rgb=np.zeros((T + 1, 64, 64, 3), np.uint8), depth=np.full((T + 1, 64, 64), depth_m, np.float32),
                          c2w=c2w, actions=np.zeros((T + 1, 8), np.float32), name="t", K=K)

    assert wall_in_first_view(traj(5.0), T)
    assert not wall_in_first_view(traj(2.0), T)  # something nearer hides it
    side = c2w.copy()
    side[:, 2, 3], side[:, 0, 3] = 0.0, np.linspace(0.0, 4.65, T + 1)  # the walk goes along +x: outside the view
    assert not wall_in_first_view(traj(5.0, side), T)


def test_parts_merge_dicts_key_by_key():
    from worldmodel.evaluation.parts import merge

    a = {"timings": {"idle_s": 1.0}, "self_consistency": {"physics_agreement": {"wall": 1}}, "idle": {"x": 1}}
    b = {"timings": {"long_walk_s": 2.0}, "self_consistency": {"physics_agreement": {"long_walk": 2}, "long_play": 3},
         "idle": 5}
    assert merge(a, b) == {"timings": {"idle_s": 1.0, "long_walk_s": 2.0},
                           "self_consistency": {"physics_agreement": {"wall": 1, "long_walk": 2}, "long_play": 3},
                           "idle": 5}

