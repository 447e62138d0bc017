#!/usr/bin/env bash
# The GPU check of issue 22, prepared to run once on a lent GPU machine; ends within 8 minutes.
#
#   bash bench/gpu_check.sh          # results in $OUT (the device tool's), else bench/results/gpu_check/
#
# What it needs beside the repo (both ignored by git, carried by the device tool):
#   .whl/  cp312 wheels of what the machine lacks: gymnasium + farama-notifications (the vector env), moderngl +
#          glcontext (the arena prompt world and the CPU splat renderer), gsplat (its CUDA extension is JIT-built
#          here, in the background, within a time limit), xformers (tried; its wheel targets another torch / CUDA)
#   .gl/   the GL loader libraries (libglvnd's libEGL & co, Debian .debs) so that moderngl reaches NVIDIA's EGL
# Either may be missing: what needs it then skips and says why.
#
# Steps (times from the start; every step under `timeout`):
#   1. install the wheels into /tmp/site, unpack the GL loaders, print the machine
#   2. start gsplat's CUDA build in the background (at most GSPLAT_BUILD_S = 300 s, MAX_JOBS=12, this GPU's arch)
#   3. pytest -m gpu (tests/test_gpu.py, the gpu test of tests/test_worldmodel_nets.py), all but gsplat's
#   4. bench/bench_gpu.py --sections train   (training steps/s of the shipped recipe; may overlap the build)
#   5. wait for the build; pytest -k gsplat (a memory render and a scene, gsplat against the CPU renderer)
#   6. bench/bench_gpu.py --sections vector,dream   (vector env B = 1/4/16; dream ticks/s with memory, 64x64, B = 1)
#   7. summary.json
# Files in $OUT (8 at most): log.txt, pytest.txt, pytest_gsplat.txt, gsplat_build.log, bench_gpu.json,
# gpu_report.txt (one line per comparison test), summary.json.
set -u
START=$(date +%s)
DEADLINE=${GPU_CHECK_DEADLINE_S:-470}
GSPLAT_BUILD_S=${GSPLAT_BUILD_S:-300}
OUT=${OUT:-$PWD/bench/results/gpu_check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
elapsed() { echo $(( $(date +%s) - START )); }
left() { local l=$(( DEADLINE - $(elapsed) )); [ $l -lt 1 ] && l=1; echo $l; }
cap() { local want=$1 l; l=$(left); [ "$want" -lt "$l" ] && echo "$want" || echo "$l"; }  # min(want, time left)
step() { echo; echo "== [$(elapsed) s] $*"; }
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 DREAMWALK_GPU_REPORT="$OUT/gpu_report.txt"

step "1. carried packages"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-} || echo "wheel install FAILED"
else
  echo "no .whl/: gymnasium, moderngl, gsplat, xformers are used only if the machine has them"
fi
if ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor
nvidia-smi -L || true
nproc
timeout 60 python3 - <<'EOF'
import torch, importlib
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
for m in ("gymnasium", "moderngl", "gsplat", "xformers", "triton"):
    try:
        mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "?"))
    except Exception as e:
        print(m, "NOT importable:", type(e).__name__, str(e)[:200])
try:
    import moderngl
    ctx = moderngl.create_standalone_context(backend="egl"); print("moderngl EGL:", ctx.info["GL_RENDERER"]); ctx.release()
except Exception as e:
    print("moderngl EGL context FAILED:", type(e).__name__, str(e)[:300])
EOF
command -v nvcc >/dev/null && nvcc --version | tail -2

step "2. gsplat CUDA extension build (background, at most ${GSPLAT_BUILD_S} s)"
export TORCH_CUDA_ARCH_LIST=$(timeout 60 python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability(0))" 2>/dev/null || echo 9.0)
export MAX_JOBS=${MAX_JOBS:-12}
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
# GNU timeout signals its whole process group: ninja and nvcc go with it.
(timeout -k 5 "$(cap "$GSPLAT_BUILD_S")" python3 -c "
import time; t = time.time()
from gsplat.cuda._backend import _C
assert _C is not None, 'gsplat found no CUDA toolkit to build with'
print(f'gsplat CUDA extension ready in {time.time() - t:.0f} s')
" > "$OUT/gsplat_build.log" 2>&1; echo $? > /tmp/gsplat_build.rc) &
BUILD=$!

step "3. pytest -m gpu (all but gsplat's test)"
timeout -k 5 "$(cap 150)" python3 -m pytest -q -rs -s -p no:cacheprovider -m gpu tests/test_gpu.py \
  tests/test_worldmodel_nets.py -k "not gsplat" > "$OUT/pytest.txt" 2>&1
echo "pytest exit $?"; tail -n 15 "$OUT/pytest.txt"

step "4. bench: training steps/s of the shipped recipe"
building=$(kill -0 $BUILD 2>/dev/null && echo "gsplat's build was running on the CPU meanwhile" || echo "nothing else running")
timeout -k 5 "$(cap 110)" python3 bench/bench_gpu.py --device cuda --sections train --out "$OUT/bench_gpu.json" \
  --note "$building" | grep -E "^train|error" ; echo "bench exit ${PIPESTATUS[0]}"

step "5. wait for gsplat's build, then its test"
wait $BUILD
rc=$(cat /tmp/gsplat_build.rc 2>/dev/null || echo "?")
echo "gsplat build exit $rc"; tail -n 5 "$OUT/gsplat_build.log"
if [ "$rc" = "0" ]; then
  # tests/test_splat.py's gsplat test (not gpu-marked: it skips without CUDA) compares against moderngl's renderer
  timeout -k 5 "$(cap 90)" python3 -m pytest -q -rs -s -p no:cacheprovider tests/test_gpu.py tests/test_splat.py \
    -k gsplat > "$OUT/pytest_gsplat.txt" 2>&1
  echo "pytest (gsplat) exit $?"; tail -n 8 "$OUT/pytest_gsplat.txt"
else
  echo "gsplat's extension was not built (exit $rc; 124 = time limit): its test is skipped; the memory renders on the CPU" \
    | tee "$OUT/pytest_gsplat.txt"
fi

step "6. bench: vector env B = 1/4/16, dream ticks/s (memory off / on)"
timeout -k 5 "$(cap 150)" python3 bench/bench_gpu.py --device cuda --sections vector,dream --append \
  --out "$OUT/bench_gpu.json" | grep -E "^(vector|dream)|error"; echo "bench exit ${PIPESTATUS[0]}"

step "7. summary"
timeout 30 python3 - "$OUT" "$rc" <<'EOF'
import json, sys
from pathlib import Path
out, rc = Path(sys.argv[1]), sys.argv[2]
def last(name):
    p = out / name
    lines = [l for l in p.read_text().splitlines() if l.strip()] if p.exists() else []
    return lines[-1] if lines else None
summary = {"pytest_gpu": last("pytest.txt"), "pytest_gsplat": last("pytest_gsplat.txt"), "gsplat_build_exit": rc,
           "comparisons": (out / "gpu_report.txt").read_text().splitlines() if (out / "gpu_report.txt").exists() else []}
try:
    b = json.loads((out / "bench_gpu.json").read_text())
    d, v, t = b.get("dream", {}), b.get("vector", {}), b.get("train", {})
    summary["bench"] = {
        "device": b.get("device_name"), "xformers": b.get("xformers"), "gsplat": b.get("gsplat"),
        "dream_memory_off_ms": d.get("memory_off", {}).get("ms_median"),
        "dream_memory_on_ms": d.get("memory_on", {}).get("ms_median"),
        "dream_memory_rasterizer": d.get("memory_on", {}).get("rasterizer"),
        "vector_rgb_ticks_per_s": {k: x.get("total_ticks_per_s") for k, x in v.get("rgb", {}).items()},
        "vector_speedup_16_over_1": v.get("speedup_16_over_1_rgb"),
        "train_ae_steps_per_s": {k: x.get("steps_per_s") for k, x in t.get("autoencoder", {}).items()},
        "train_dyn_steps_per_s": {k: x.get("steps_per_s") for k, x in t.get("dynamics", {}).items()},
        "errors": {k: b[k]["error"] for k in ("dream", "vector", "train") if isinstance(b.get(k), dict) and "error" in b[k]}}
except Exception as e:
    summary["bench"] = f"no bench results: {e}"
(out / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps(summary, indent=2))
EOF
echo "done in $(elapsed) s"
sleep 1  # let tee finish log.txt
