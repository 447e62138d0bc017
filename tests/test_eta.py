"""The staged run's ETA (worldmodel/training/eta.py): its units, its arithmetic, and the rates a run records."""

import time
from types import SimpleNamespace

import pytest

from worldmodel.training.common import stoppable_steps
from worldmodel.training.eta import estimate, eta_line, evaluations, preset_of, rates_from_run, run_units


def cfg(**kw):
    base = dict(ae_steps=2000, decoder_steps=0, steps=2000, adv_steps=0, finetune_steps=400,
                context_noise_choices=(0.0, 0.2, 0.35, 0.5))
    return SimpleNamespace(**{**base, **kw})


def test_the_choose_stage_evaluations_are_counted_as_the_pipeline_runs_them():
    assert evaluations(cfg(), has_motion=True) == 5  # both cameras at 0, then 0.2, 0.35, 0.5
    assert evaluations(cfg(), has_motion=False) == 4  # one camera: each level
    assert evaluations(cfg(context_noise_choices=(0.0,)), has_motion=True) == 2
    assert evaluations(cfg(context_noise_choices=()), has_motion=False) == 0


def test_units_and_the_estimate():
    units = run_units(cfg(), train_frames=45000, val_recordings=10, camera=True)
    assert units == {"base": {"autoencoder_step_s": 2000, "dynamics_step_s": 2000, "prepare_reproject_frame_s": 45000},
                     "camera": {"camera_frame_s": 45000},
                     "memory": {"prepare_splat_predicted_frame_s": 45000, "memory_step_s": 400},
                     "choose": {"evaluate_recording_s": 50}}
    rates = {"fp32_gemm_gflops": 100.0, "autoencoder_step_s": 0.1, "dynamics_step_s": 0.4,
             "prepare_reproject_frame_s": 0.001, "camera_frame_s": 0.0, "prepare_splat_predicted_frame_s": 0.02,
             "memory_step_s": 0.5, "evaluate_recording_s": 6.0}
    secs = estimate(units, rates)
    assert secs == pytest.approx({"base": 200 + 800 + 45, "camera": 0.0, "memory": 900 + 200, "choose": 300})
    assert estimate(units, rates, gemm_now=50.0)["base"] == pytest.approx(2 * 1045)  # half the speed, twice the time
    del rates["memory_step_s"]
    assert estimate(units, rates)["memory"] is None  # a unit without a rate is not guessed
    no_camera = run_units(cfg(), 45000, 0, camera=False)
    assert set(no_camera) == {"base"} and "prepare_latents_frame_s" in no_camera["base"]


def test_the_line_says_each_stage_and_the_total_or_why_not(tmp_path):
    import json

    units = run_units(cfg(), 1000, 2, camera=True)
    rates = {"fp32_gemm_gflops": 100.0, "autoencoder_step_s": 0.03, "dynamics_step_s": 0.06,
             "prepare_reproject_frame_s": 0.001, "camera_frame_s": 0.0, "prepare_splat_predicted_frame_s": 0.01,
             "memory_step_s": 0.09, "evaluate_recording_s": 30.0}
    path = tmp_path / "presets.json"
    path.write_text(json.dumps({"presets": {"small": {"training": rates}}}))
    line = eta_line("small", units, 100.0, path=path)
    assert line.startswith("ETA on 2 cores: base 3.0 min, camera 0 s, memory 46 s, choose 5.0 min; total ~8.8 min"), line
    assert eta_line("small", units, 100.0, done={"split", "base", "camera", "memory"}, path=path).startswith(
        "ETA on 2 cores: choose 5.0 min; total ~5.0 min")
    assert "no measured training rates for preset medium" in eta_line("medium", units, 100.0, path=path)
    assert "no measured training rates for this model config" in eta_line(None, units, 100.0, path=path)


def test_a_preset_is_recognised_by_its_shapes_only():
    from worldmodel.training.common import preset_path
    from worldmodel.training.common import load_presets

    m, t = load_presets(preset_path("small"))
    assert preset_of(m, t) == "small"
    from dataclasses import replace

    assert preset_of(m, replace(t, steps=5)) == "small"  # the step count is this run's units, not its rate
    assert preset_of(m, replace(t, batch_size=t.batch_size * 2)) is None


def test_stoppable_steps_records_what_the_steps_after_the_first_took():
    times = {}
    for _ in stoppable_steps("stage", iter(range(5)), times=times):
        time.sleep(0.02)
    assert times["stage"][0] == 4 and 0.07 < times["stage"][1] < 0.5
    times.clear()
    for _ in stoppable_steps("stage", iter(range(1)), times=times):
        pass
    assert times == {}  # one step: nothing but the warm-up, no rate


def test_rates_from_a_runs_pipeline_json():
    state = {"done": {"split": {"train": ["a", "b"], "validation": ["c"]},
                      "base": {"seconds": 50, "times": {"autoencoder": [10, 2.0], "dynamics": [20, 8.0],
                                                        "prepare_reproject": [400, 4.0]}},
                      "camera": {"seconds": 0.8},
                      "memory": {"seconds": 30, "times": {"dynamics": [4, 2.0], "prepare_splat_predicted": [400, 20.0]}}},
             "frames": {"train": 400, "validation": 200},
             "scores": {"camera_model": {"seconds": 30.0, "recordings": 1}, "camera_action": {"seconds": 40.0, "recordings": 1}}}
    assert rates_from_run(state) == pytest.approx({"autoencoder_step_s": 0.2, "dynamics_step_s": 0.4,
                                                   "prepare_reproject_frame_s": 0.01, "memory_step_s": 0.5,
                                                   "prepare_splat_predicted_frame_s": 0.05, "camera_frame_s": 0.002,
                                                   "evaluate_recording_s": 35.0})
