"""Start-up: the time from launching `python play.py` to the first dreamed frame, and where it goes.

    python bench/bench_startup.py            # writes bench/results/startup.json

Runs `play.py --ticks 1` (headless, and in a window under Xvfb when `xvfb-run` is installed) `--runs` times each,
timestamps every start-up line it prints (stderr, unbuffered) as it arrives, and takes the summary line (printed
once the first dreamed tick has been presented) as the first frame. The OS file cache is warm after the first run;
the figures are the median of the rest. The machine's fp32 GEMM speed is measured beside them, as the other benches do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 5.0


def gemm_gflops() -> float:
    """This machine's fp32 GEMM speed on 2 threads (worldmodel.device.measure_peak_gflops), rounded."""
    import torch

    from worldmodel.device import measure_peak_gflops

    torch.set_num_threads(2)
    return round(measure_peak_gflops(torch.float32), 1)


def one_run(cmd: list[str]) -> dict[str, float]:
    """Seconds from launch to each start-up line and to the first frame (the summary line)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    marks: dict[str, float] = {}

    def read(stream, kind):
        for line in stream:
            t = round(time.perf_counter() - t0, 3)
            line = line.strip()
            if kind == "err" and line.startswith("dreamwalk: "):
                key = line[len("dreamwalk: "):].split(" (")[0].split(" after")[0].rstrip("…")
                marks.setdefault(key, t)
            elif kind == "out" and line.startswith("{") and '"ticks"' in line:
                marks.setdefault("first frame", t)

    threads = [threading.Thread(target=read, args=(p.stdout, "out")), threading.Thread(target=read, args=(p.stderr, "err"))]
    for th in threads:
        th.start()
    p.wait(timeout=300)
    for th in threads:
        th.join()
    marks["exit"] = round(time.perf_counter() - t0, 3)
    if p.returncode != 0 or "first frame" not in marks:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {p.returncode})")
    return marks


def median_marks(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=4, help="runs per mode (the first warms the file cache and is dropped)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "startup.json"))
    args = p.parse_args(argv)
    base = [sys.executable, "play.py", "--ticks", "1", "--no-video"]
    modes = {"headless": base + ["--headless"]}
    if shutil.which("xvfb-run"):
        modes["window (Xvfb)"] = ["xvfb-run", "-a"] + base
    results = {}
    for mode, cmd in modes.items():
        runs = [one_run(cmd) for _ in range(max(2, args.runs))]
        results[mode] = {"first_run": runs[0], "median_warm": median_marks(runs[1:])}
        print(mode, results[mode]["median_warm"], flush=True)
    out = {
        "command": "python play.py --ticks 1 --no-video [--headless]",
        "target_s": TARGET_S,
        "seconds_from_launch": results,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "fp32_gemm_gflops_2_threads": gemm_gflops()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
