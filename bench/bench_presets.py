"""The cost of a tick for each `python -m worldmodel.train --preset` size: pose + one sampling step + commit +
decode, fp32, batch 1, random weights (cost does not depend on their values), after the KV window is full; the
scene memory's render comes on top (bench_dream.py). The GEMM speed is recorded beside the figures: this machine's
drifts between 40 and 177 GFLOP/s.

    python bench/bench_presets.py            # writes bench/results/presets.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as bench_dynamics.py: a busy-waiting team collapses when shared

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dynamics import _cpu_name, measure_peak_gflops, run_ticks  # noqa: E402

from worldmodel.train import PRESETS, preset_path  # noqa: E402
from worldmodel.training.common import load_presets  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    torch.set_num_threads(2)
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
        print(name, out["presets"][name], flush=True)
    path = ROOT / "bench" / "results" / "presets.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
