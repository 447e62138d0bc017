"""How long a staged run (training/pipeline.py) will take, said before it starts: this run's units of work (steps,
frames, evaluations) times the preset's rates measured on the reference machine's 2 cores by
`python bench/bench_presets.py --training` (bench/results/presets.json), scaled by this machine's fp32 GEMM speed
now against the speed they were measured at. Each stage also says its own measured time a step once it runs
(common.stoppable_steps); a run records what its parts took in pipeline.json (`times`, `seconds`), and
`rates_from_run` turns those into the rates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from worldmodel.training.common import ETA_AFTER, PRESETS, load_presets, preset_path

RATES_FILE = Path(__file__).resolve().parents[2] / "bench" / "results" / "presets.json"

def frames_in(paths: list[str] | list[Path]) -> int:
    """The frames (ticks) of the recordings."""
    from engine.recording import Recording

    return sum(len(Recording(Path(p))) for p in paths)


def evaluations(cfg: Any, has_motion: bool) -> int:
    """How many held-out evaluations the choose stage runs (training/pipeline.py `_choose`): with fitted camera rules
    both cameras at context noise 0, then each further context-noise level; with one camera each level, when there
    is more than one."""
    levels = len(set(float(c) for c in cfg.context_noise_choices) | {0.0})
    if not has_motion:
        return levels if levels > 1 else 0
    return 2 + levels - 1


def run_units(cfg: Any, train_frames: int, val_recordings: int, camera: bool) -> dict[str, dict[str, float]]:
    """Per stage, the units of work of a run of `cfg` (rate key -> count): the stages the pipeline runs, in order. An
    evaluation's cost is counted per held-out recording (its open loop dreams 3 starts of up to 8 + 128 ticks)."""
    base = {"autoencoder_step_s": cfg.ae_steps, "decoder_step_s": cfg.decoder_steps, "dynamics_step_s": cfg.steps,
            "adversarial_step_s": cfg.adv_steps,
            ("prepare_reproject_frame_s" if camera else "prepare_latents_frame_s"): train_frames}
    units: dict[str, dict[str, float]] = {"base": base}
    if camera:
        units["camera"] = {"camera_frame_s": train_frames}
        if cfg.finetune_steps:
            units["memory"] = {"prepare_splat_predicted_frame_s": train_frames, "memory_step_s": cfg.finetune_steps}
    if val_recordings:
        units["choose"] = {"evaluate_recording_s": evaluations(cfg, camera) * val_recordings}
    return {stage: {k: float(v) for k, v in u.items() if v} for stage, u in units.items()}


def preset_of(model_cfg: Any, cfg: Any) -> str | None:
    """The preset whose model and batch shapes this run has (what a step's cost depends on), None for another size."""
    for name in PRESETS:
        m, t = load_presets(preset_path(name))
        if m == model_cfg and (t.ae_batch, t.batch_size, t.clip_frames) == (cfg.ae_batch, cfg.batch_size, cfg.clip_frames):
            return name
    return None


def measured_rates(preset: str | None, path: Path = RATES_FILE) -> dict[str, Any] | None:
    """The preset's measured rates (presets.json presets.NAME.training), None when there are none."""
    if preset is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    rates = ((data.get("presets") or {}).get(preset) or {}).get("training")
    return rates if isinstance(rates, dict) and "fp32_gemm_gflops" in rates else None


def estimate(units: Mapping[str, Mapping[str, float]], rates: Mapping[str, Any],
             gemm_now: float | None = None) -> dict[str, float | None]:
    """Seconds per stage (None for a stage with a unit the rates do not have): units times rates, scaled by the GEMM
    speed the rates were measured at over `gemm_now` (None: unscaled)."""
    scale = 1.0 if not gemm_now else float(rates["fp32_gemm_gflops"]) / gemm_now
    out: dict[str, float | None] = {}
    for stage, u in units.items():
        if any(k not in rates for k in u):
            out[stage] = None
        else:
            out[stage] = sum(n * float(rates[k]) for k, n in u.items()) * scale
    return out


def eta_line(preset: str | None, units: Mapping[str, Mapping[str, float]], gemm_now: float | None,
             done: set[str] = frozenset(), path: Path = RATES_FILE) -> str:
    """One line: the time of each stage still to run and the total, or why there is no estimate."""
    rates = measured_rates(preset, path)
    todo = {s: u for s, u in units.items() if s not in done}
    if not todo:
        return "ETA: every stage is done"
    if rates is None:
        return (f"ETA: no measured training rates for {'this model config' if preset is None else f'preset {preset}'} "
                f"(python bench/bench_presets.py --training); each stage says its own after {ETA_AFTER} steps")
    secs = estimate(todo, rates, gemm_now)
    parts = [f"{s} {'?' if v is None else _minutes(v)}" for s, v in secs.items()]
    known = [v for v in secs.values() if v is not None]
    total = _minutes(sum(known)) + (" + the stages marked ?" if len(known) < len(secs) else "")
    speed = (f"this machine's fp32 GEMM {gemm_now:.0f} GFLOP/s now, {rates['fp32_gemm_gflops']:.0f} when measured"
             if gemm_now else f"at fp32 GEMM {rates['fp32_gemm_gflops']:.0f} GFLOP/s")
    return f"ETA on 2 cores: {', '.join(parts)}; total ~{total} ({speed}; bench/results/presets.json)"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def rates_from_run(state: Mapping[str, Any]) -> dict[str, float]:
    """A finished run's pipeline.json (its `done` stages' `times` and `seconds`, the choose stage's evaluations) ->
    rates: seconds per step of each stage, per frame of each memory-image pass and the camera fit, per held-out
    recording of an evaluation."""
    done = state.get("done") or {}
    rates: dict[str, float] = {}

    def per(pair: Any) -> float | None:
        return float(pair[1]) / float(pair[0]) if isinstance(pair, list) and len(pair) == 2 and pair[0] else None

    for stage in ("base", "memory"):
        for part, pair in ((done.get(stage) or {}).get("times") or {}).items():
            rate = per(pair)
            if rate is None:
                continue
            if stage == "memory" and part == "dynamics":
                rates["memory_step_s"] = rate
            elif part.startswith("prepare_"):
                rates[f"{part}_frame_s"] = rate
            elif stage == "base":
                rates[f"{part}_step_s"] = rate
    camera = done.get("camera") or {}
    frames = state.get("frames") or {}
    if "seconds" in camera and frames.get("train"):
        rates["camera_frame_s"] = float(camera["seconds"]) / float(frames["train"])
    evals = [s for s in (state.get("scores") or {}).values() if s.get("seconds") and s.get("recordings")]
    if evals:
        rates["evaluate_recording_s"] = (sum(float(s["seconds"]) for s in evals)
                                         / sum(float(s["recordings"]) for s in evals))
    return rates
