"""The judge of the unseen on cases whose answers are known: KID, FD and W1; region scores; physics against the
picture; the dream revisit."""

from __future__ import annotations

import numpy as np
import pytest

from engine.action import Action
from worldmodel.evaluation.consistency import (PhysicsAgreement, corridor_clearance, dream_revisit, inside_share,
                                               lift_depth, physics_agreement, revisit_probe_actions)
from worldmodel.evaluation.metrics import score_frames, score_regions, summarize
from worldmodel.evaluation.realism import features, frechet, kid, wasserstein1
from worldmodel.evaluation.unseen import FrameSet, realism_scores, seen_cells
from worldmodel.motion import MotionModel
from worldmodel.pose import compose


def scenes(n: int, seed: int, size: int = 64) -> np.ndarray:
    """n images of a few random coloured boxes on a two-tone ground: uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        img = np.zeros((size, size, 3))
        img[: size // 2] = rng.uniform(120, 220, 3)
        img[size // 2:] = rng.uniform(30, 120, 3)
        for _ in range(rng.integers(3, 7)):
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(6, size // 2, 2)
            img[y:y + h, x:x + w] = rng.uniform(0, 255, 3)
        out[i] = np.clip(img + rng.normal(0, 6, img.shape), 0, 255)
    return out


def blur(x: np.ndarray, r: int) -> np.ndarray:
    """A box blur of radius r (separable, edge-padded)."""
    f = x.astype(np.float64)
    for axis in (1, 2):
        pad = [(0, 0)] * 4
        pad[axis] = (r, r)
        p = np.pad(f, pad, mode="edge")
        f = sum(np.take(p, range(k, k + x.shape[axis]), axis=axis) for k in range(2 * r + 1)) / (2 * r + 1)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def two_sets():
    a, b = scenes(60, 1), scenes(60, 2)
    return a, b, features(a)["all"], features(b)["all"]


def test_kid_is_zero_for_a_set_against_itself_and_grows_with_blur(two_sets):
    a, b, fa, fb = two_sets
    g = np.repeat(np.arange(6), 10)
    same = kid(fa, fa, g, g + 100)["value"]  # only the cross pairs of an image with itself differ from 0
    floor = kid(fa, fb, g, g + 100)  # two samples of one distribution: its interval covers 0
    assert floor["ci95"][0] <= 0.0 <= floor["ci95"][1]
    kids = [kid(features(blur(a, r))["all"], fb, g, g + 100)["value"] for r in (2, 4, 8)]
    assert abs(same) < 0.1 * kids[0] and floor["value"] < kids[0] < kids[1] < kids[2]
    fds = [frechet(features(blur(a, r))["all"], fb) for r in (1, 4)]
    assert frechet(fa, fb) < fds[0] < fds[1]
    assert frechet(fa, fa) == pytest.approx(0.0, abs=1e-6)


def test_the_mean_frame_is_less_real_than_copy_last_and_the_floor_is_lowest(two_sets):
    a, b, _, _ = two_sets
    g = np.repeat(np.arange(6), 10)
    held = np.repeat(a[::10], 10, axis=0)  # copy-last: one real frame per walk, held
    mean = np.broadcast_to(a.mean(0).round().astype(np.uint8), a.shape).copy()
    out = realism_scores({"floor": FrameSet(a, g), "copy_last": FrameSet(held, g), "mean_frame": FrameSet(mean, g)},
                         FrameSet(b, g + 100))
    k = {m: out["kid"][m]["value"] for m in out["kid"]}
    assert k["floor"] < k["copy_last"] < k["mean_frame"]
    assert out["fd"]["floor"] < out["fd"]["copy_last"] < out["fd"]["mean_frame"]


def test_region_realism_sees_a_haze_pasted_into_the_region_and_little_outside_it(two_sets):
    """Validation of the unseen-cells realism: the mean colour pasted into the right half of every frame is far from
    the reference there, and the left half (whose features see the right half only through the trunk's receptive
    field) moves much less."""
    a, b, _, fb_all = two_sets
    g = np.repeat(np.arange(6), 10)
    hazed = a.copy()
    hazed[:, :, 32:] = a[:, :, 32:].reshape(-1, 3).mean(0).round().astype(np.uint8)
    right = np.zeros(a.shape[:3], bool)
    right[:, :, 32:] = True
    out = realism_scores({"hazed": FrameSet(hazed, g), "truth": FrameSet(a, g)}, FrameSet(b, g + 100), unseen=right)
    left = realism_scores({"hazed": FrameSet(hazed, g), "truth": FrameSet(a, g)}, FrameSet(b, g + 100), unseen=~right)
    haze_right = out["unseen_kid"]["hazed"]["value"] - out["unseen_kid"]["truth"]["value"]
    haze_left = left["unseen_kid"]["hazed"]["value"] - left["unseen_kid"]["truth"]["value"]
    assert haze_right > 5 * max(haze_left, 0.05)


def test_wasserstein1_known_values():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, 5000)
    assert wasserstein1(x, x + 2.0) == pytest.approx(2.0, abs=1e-9)  # a shift moves every quantile by it
    assert wasserstein1(np.full(100, 0.9), np.full(50, 5.0)) == pytest.approx(4.1)
    assert np.isnan(wasserstein1(np.array([]), x))


def test_region_scores_split_the_frame_and_the_whole_region_is_the_frame():
    rng = np.random.default_rng(3)
    truth = scenes(4, 5)
    pred = truth.copy()
    pred[:, :, 32:] = rng.integers(0, 255, pred[:, :, 32:].shape)  # wrong on the right, exact on the left
    left = np.zeros(truth.shape[:3], bool)
    left[:, :, :32] = True
    parts = score_regions(pred, truth, left)
    s, u, a = (summarize(parts[k]) for k in ("seen", "unseen", "all"))
    assert s["psnr"] == 100.0 and u["psnr"] < a["psnr"] < 100  # engine.image.PSNR_CAP_DB on the exact half
    assert s["lpips"] < u["lpips"] and s["sharpness"] == pytest.approx(1.0)
    whole = summarize(score_frames(pred, truth))
    for metric in ("psnr", "ssim", "lpips", "sharpness", "contrast_ratio"):
        assert a[metric] == pytest.approx(whole[metric], rel=1e-9)
    everywhere = summarize(score_frames(pred, truth, mask=np.ones(truth.shape[:3], bool)))
    for metric in ("psnr", "ssim", "lpips", "sharpness"):
        assert everywhere[metric] == pytest.approx(whole[metric], rel=1e-6)
    nothing = summarize(score_frames(pred, truth, mask=np.zeros(truth.shape[:3], bool)))
    assert np.isnan(nothing["psnr"]) and np.isnan(nothing["lpips"])


def test_seen_cells_follow_the_cells_mean_coverage():
    alpha = np.zeros((1, 8, 8), np.float32)
    alpha[0, :4, :4] = 1.0  # one whole cell
    alpha[0, :4, 4:6] = 1.0  # half of the next: 0.5, seen
    alpha[0, 4:, :1] = 1.0  # a quarter: unseen
    m = seen_cells(alpha, 4)
    assert m[0, :4, :8].all() and not m[0, 4:].any()


K = np.array([[32.0, 0, 32], [0, 32.0, 32], [0, 0, 1]])
RULES = MotionModel()  # walk 0.15 m a tick, body half-width 0.3 m


def walk_towards_wall(wall_m: float, stop_at: float | None, ticks: int = 12):
    """A camera walking forward (-z) at 0.15 m a tick with a fronto-parallel wall `wall_m` ahead of its start; it
    stops (stays put) once its eye is `stop_at` m from the wall (None: it walks on through)."""
    c2w, eye = [], np.array([5.0, 1.6, 5.0])
    for t in range(ticks + 1):
        c2w.append(compose(eye.copy(), 0.0, 0.0))
        nxt = eye + np.array([0, 0, -0.15])
        if stop_at is None or (eye[2] - (5.0 - wall_m)) - 0.15 >= stop_at:
            eye = nxt
    c2w = np.stack(c2w)
    depth = np.stack([np.full((64, 64), max(c[2, 3] - (5.0 - wall_m), 0.01), np.float32) for c in c2w])
    actions = np.zeros((ticks + 1, 8), np.float32)
    actions[1:] = Action(forward=True).to_array()
    return depth, c2w, actions


def test_physics_agrees_when_the_camera_stops_at_the_shown_wall_and_not_when_it_walks_through_it():
    depth, c2w, actions = walk_towards_wall(1.5, stop_at=0.35)
    good = physics_agreement(depth, c2w, actions, K, RULES)
    assert good.ticks == 12 and good.share == 1.0 and good.blocked > 0
    depth, c2w, actions = walk_towards_wall(1.5, stop_at=None)  # through the wall: it is shown, and passed
    bad = physics_agreement(depth, c2w, actions, K, RULES)
    assert bad.through > 0 and bad.share < 0.8
    # stopped in the open: a wall 20 m away is not what blocked it
    depth, c2w, actions = walk_towards_wall(20.0, stop_at=19.9)
    open_stop = physics_agreement(depth, c2w, actions, K, RULES)
    assert open_stop.blocked_by_nothing == open_stop.blocked > 0 and open_stop.share < 1.0
    assert (good + bad).ticks == 24 and PhysicsAgreement().to_json()["share"] is None


def test_corridor_clearance_of_a_wall_ahead():
    eye = np.array([0.0, 1.6, 0.0])
    points = lift_depth(np.full((64, 64), 2.0, np.float32), compose(eye, 0.0, 0.0), K)
    assert corridor_clearance(points, eye, np.array([0.0, -1.0]), 0.3, 1.6, 0.5, 0.2) == pytest.approx(1.7, abs=1e-3)
    assert corridor_clearance(points, eye, np.array([0.0, 1.0]), 0.3, 1.6, 0.5, 0.2) == np.inf  # nothing behind


def test_a_dream_revisit_of_a_static_memory_scores_like_the_memorys_own_render():
    from splat import SceneMemory

    frame = scenes(1, 9)[0]
    memory = SceneMemory(width=64, height=64)
    memory.insert(frame, np.full((64, 64), 4.0, np.float32), compose(np.array([0, 1.6, 0.0]), 0.0, 0.0), K, 0)
    turn, pairs, _, _ = revisit_probe_actions()
    yaw = np.concatenate([[0.0], np.cumsum([a.yaw for a in turn])])
    c2w = np.stack([compose(np.array([0, 1.6, 0.0]), y, 0.0) for y in yaw])
    frames = np.stack([memory.render(c, K, t).rgb for t, c in enumerate(c2w)])
    got = dream_revisit(frames, c2w, pairs)
    assert got["pairs"] == 30 and got["pairs_off_pose"] == 0
    assert got["psnr_db"] == pytest.approx(float(np.mean([score_frames(frames[[b]], frames[[a]], perceptual=False).psnr
                                                          for a, b in pairs])))
    assert got["psnr_db"] == 100.0  # a static memory rendered at one pose twice is the same picture
    moved = c2w.copy()
    moved[60:, 0, 3] += 0.5  # back at another place: no pair counts
    assert dream_revisit(frames, moved, pairs)["pairs"] == 0


def test_inside_share_counts_cameras_in_the_level():
    c2w = np.stack([compose(np.array([x, 1.6, 5.0]), 0.0, 0.0) for x in (-1.0, 1.0, 30.0, 57.0)])
    assert inside_share(c2w, (56.0, 56.0)) == 0.5


def test_the_selection_rule_gates_first_then_realism_then_sharpness():
    from worldmodel.evaluation.report import select

    def cand(physics, realism, ci, sharp, lp=0.3):
        return {"gates": {"return_360_db": 30.0, "idle_drift_m": 0.0, "dream_revisit_db": 30.0,
                          "physics_agreement": physics},
                "realism": realism, "realism_ci95": ci, "realism_on": "unseen_kid 33-128", "sharpness_gap": sharp,
                "st_lpips_8plus": lp}

    # the most real candidate that breaks physics loses to one that holds it
    name, why = select({"a": cand(0.90, 0.2, [0.1, 0.3], 0.1), "b": cand(0.97, 0.8, [0.7, 0.9], 0.5)})
    assert name == "b" and "most real" in why
    # both hold: the more real wins; within its interval, the sharper
    assert select({"a": cand(0.97, 0.5, [0.4, 0.6], 0.4), "b": cand(0.98, 1.5, [1.3, 1.7], 0.1)})[0] == "a"
    name, why = select({"a": cand(0.97, 0.5, [0.4, 0.6], 0.4), "b": cand(0.98, 0.55, [0.45, 0.7], 0.1)})
    assert name == "b" and "sharpest" in why
    # none holds every gate: the fewest failures, said so; no realism figures: ST-LPIPS decides
    name, why = select({"a": cand(0.5, None, None, None, lp=0.4), "b": cand(0.6, None, None, None, lp=0.3)})
    assert name == "b" and "no candidate holds every gate" in why and "ST-LPIPS" in why
    # an unmeasured gate does not fail
    assert select({"a": cand(None, 0.5, [0.4, 0.6], 0.1)})[0] == "a"


def test_the_headline_warns_when_the_dream_is_a_blur_or_no_better_than_the_mean_frame():
    from worldmodel.evaluation.openloop import quality_warnings

    def report(sharp, model_psnr, model_lpips):
        return {"sharpness": {"model": {"8": sharp[0], "32": sharp[1]}},
                "psnr": {"model": {"8": model_psnr[0], "32": model_psnr[1]}, "mean_frame": {"8": 15.0, "32": 15.0}},
                "lpips": {"model": {"8": model_lpips[0], "32": model_lpips[1]}, "mean_frame": {"8": 0.8, "32": 0.8}}}

    assert quality_warnings(report((0.9, 0.7), (20.0, 16.0), (0.2, 0.4)), (8, 32)) == []
    (w,) = quality_warnings(report((0.9, 0.3), (20.0, 16.0), (0.2, 0.4)), (8, 32))
    assert "blurred at tick(s) 32" in w and "0.30" in w
    (w,) = quality_warnings(report((0.9, 0.7), (20.0, 14.0), (0.2, 0.85)), (8, 32))
    assert "no better than the mean frame at tick(s) 32" in w
    # better PSNR but worse ST-LPIPS than the mean frame is not "no better": one of the two says the dream has content
    assert quality_warnings(report((0.9, 0.7), (20.0, 16.0), (0.2, 0.85)), (8, 32)) == []
