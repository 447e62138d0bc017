"""The cost of a tick for each `python -m worldmodel.train --preset` size: pose + one sampling step + commit +
decode, fp32, batch 1, random weights (cost does not depend on their values), after the KV window is full; the
scene memory's render comes on top (bench_dream.py). The GEMM speed is recorded beside the figures: this machine's
drifts between 40 and 177 GFLOP/s.

    python bench/bench_presets.py            # writes bench/results/presets.json
    python bench/bench_presets.py --training small medium   # + those presets' training rates (their `training`)

`--training`: for each preset named, a short real staged run (`python -m worldmodel.train --preset NAME` with
TRAINING_STEPS steps in each stage) on arena recordings made for it (TRAINING_EPISODES explore walks of
TRAINING_TICKS ticks at 128x128, one held out), and the rates its pipeline.json records (s a step per stage, s a
frame for the memory images and the camera fit, s an evaluation per held-out recording): what
`python -m worldmodel.train --preset` multiplies by its own steps and frames for the ETA it says before it starts
(worldmodel/training/eta.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_dynamics.py: a busy-waiting team collapses when shared

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dynamics import _cpu_name, run_ticks  # noqa: E402

from worldmodel.device import measure_peak_gflops  # noqa: E402
from worldmodel.training.common import PRESETS, preset_path  # noqa: E402
from worldmodel.training.common import load_presets  # noqa: E402
from worldmodel.training.eta import estimate, rates_from_run, run_units  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "presets.json"
TRAINING_STEPS = 40  # steps of each stage a rate is measured over (the first, warm-up step left out)
TRAINING_EPISODES, TRAINING_TICKS = 3, 200  # 200 ticks: the open loop's longest horizon (8 + 128) fits
REFERENCE = (100, 500)  # the README guide's recordings (100 explore walks of 500 ticks): the table's training minutes


def training_rates(name: str, work: Path) -> dict:
    """A short staged run of preset `name` in `work` and the rates it measured (module docstring)."""
    data = work / "data"
    if not data.exists():
        subprocess.run([sys.executable, "-m", "engine.rollout", "--world", "arena", "--policy", "explore", "--episodes",
                        str(TRAINING_EPISODES), "--ticks", str(TRAINING_TICKS), "--out", str(data), "--split", "train",
                        "--set", "width=128", "--set", "height=128"], cwd=ROOT, check=True, capture_output=True)
    _, tcfg = load_presets(preset_path(name))
    steps = {"ae_steps": TRAINING_STEPS, "steps": TRAINING_STEPS,
             "finetune_steps": TRAINING_STEPS if tcfg.finetune_steps else 0,
             "decoder_steps": TRAINING_STEPS if tcfg.decoder_steps else 0}
    run = work / f"run_{name}"
    gemm_before = measure_peak_gflops(torch.float32)
    cmd = [sys.executable, "-m", "worldmodel.train", "--preset", name, "--data", str(data), "--out", str(run),
           "--no-progress"] + [a for k, v in steps.items() for a in ("--set", f"{k}={v}")]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{name}: the training run failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    wall = time.perf_counter() - t0
    gemm = (gemm_before + measure_peak_gflops(torch.float32)) / 2
    rates = {k: round(v, 5) for k, v in sorted(rates_from_run(json.loads((run / "pipeline.json").read_text())).items())}
    # what the rates say of the README guide's run (REFERENCE recordings, a tenth held out), at the speed measured
    n, ticks = REFERENCE
    held = max(1, n // 10)
    units = run_units(tcfg, (n - held) * (ticks + 1), held, camera=True)
    minutes = {stage: round(v / 60, 1) for stage, v in estimate(units, {"fp32_gemm_gflops": gemm, **rates}).items()
               if v is not None}
    return {"fp32_gemm_gflops": round(gemm, 1), "steps_timed": TRAINING_STEPS - 1,
            "recordings": f"{TRAINING_EPISODES} arena explore walks of {TRAINING_TICKS} ticks at 128x128, 1 held out",
            "run_s": round(wall, 1), **rates,
            "reference_run": {"recordings": f"{n} x {ticks} ticks, {held} held out", "minutes": minutes,
                              "total_minutes": round(sum(minutes.values()), 1)}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    staged = [n for n in PRESETS if load_presets(preset_path(n))[1].staged]  # the presets that run the pipeline
    p.add_argument("--training", nargs="*", choices=staged, default=None, metavar="PRESET",
                   help=f"also measure these presets' training rates (a short real run each; minutes): {staged}")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    work = tempfile.TemporaryDirectory(prefix="bench_presets_")  # the recordings, shared by the presets' runs
    gemm = measure_peak_gflops(torch.float32)
    out = {"what": __doc__.split("\n\n")[0], "command": "python bench/bench_presets.py", "cpu": _cpu_name(),
           "threads": 2, "fp32_gemm_gflops": round(gemm, 1), "time": time.strftime("%Y-%m-%d %H:%M"), "presets": {}}
    for name in PRESETS:
        mcfg, tcfg = load_presets(preset_path(name))
        r = run_ticks(mcfg, "fp32", 1, ticks=60, warm_ticks=mcfg.dynamics.window + 4, peak={"fp32": gemm})
        params = sum(p.numel() for p in __import__("worldmodel.dynamics", fromlist=["x"]).DynamicsTransformer(
            mcfg.dynamics, mcfg.latent_shape).parameters())
        out["presets"][name] = {"frame_size": list(mcfg.frame_size), "latent_shape": list(mcfg.latent_shape),
                                "layers": mcfg.dynamics.layers, "dim": mcfg.dynamics.dim, "window": mcfg.dynamics.window,
                                "dynamics_params_M": round(params / 1e6, 2), "tick_ms_median": round(r["median_ms"], 1),
                                "tick_ms_p90": round(r["p90_ms"], 1), "gflop_per_tick": round(r["gflop_per_tick"], 3),
                                "ae_steps": tcfg.ae_steps, "decoder_steps": tcfg.decoder_steps, "steps": tcfg.steps,
                                "finetune_steps": tcfg.finetune_steps}
        before = ((old.get("presets") or {}).get(name) or {}).get("training")
        if args.training is not None and name in args.training:
            out["presets"][name]["training"] = training_rates(name, Path(work.name))
        elif before:  # rates measured by an earlier --training run stay
            out["presets"][name]["training"] = before
        print(name, out["presets"][name], flush=True)
    work.cleanup()
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
