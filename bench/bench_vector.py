"""Batched dreaming: total env ticks/s of DreamVectorEnv for B = 1, 4, 16 (one batched forward per tick).

    python bench/bench_vector.py --checkpoint assets/model      # writes bench/results/vector.json

Target (issue: agents): B = 16 gives at least 4x the total ticks/s of B = 1. Median of repeats.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", default=str(ROOT / "assets" / "model"))
    p.add_argument("--ticks", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "vector.json"))
    args = p.parse_args()
    import worldmodel  # noqa: F401  (sets OMP_WAIT_POLICY before torch)
    import numpy as np
    import torch

    torch.set_num_threads(2)
    from worldmodel.vector import DreamVectorEnv

    results = {}
    for B in (1, 4, 16):
        envs = DreamVectorEnv(B, checkpoint=args.checkpoint, max_steps=10**9)
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        rates = []
        for _ in range(args.repeats):
            acts = [np.concatenate([rng.random((B, 6)) > 0.6, rng.uniform(-5, 5, (B, 2))], 1).astype(np.float32)
                    for _ in range(args.ticks)]
            envs.step(acts[0])  # warm-up
            t0 = time.perf_counter()
            for a in acts:
                envs.step(a)
            rates.append(B * args.ticks / (time.perf_counter() - t0))
        envs.close()
        results[str(B)] = {"total_ticks_per_s": round(statistics.median(rates), 2),
                           "ms_per_batched_tick": round(1000 * B / statistics.median(rates), 2)}
        print(B, results[str(B)], flush=True)
    out = {"checkpoint": args.checkpoint, "threads": 2, "batches": results,
           "speedup_16_over_1": round(results["16"]["total_ticks_per_s"] / results["1"]["total_ticks_per_s"], 2)}
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
