"""Render 3D Gaussians: one function, `rasterize`, with gsplat's argument names, conventions and results.

Backends
- "gsplat": `gsplat.rasterization(..., render_mode="RGB+ED")`; needs CUDA (gsplat has no CPU path, issues #205/#635).
- "cpu":    our own renderer: moderngl (EGL, headless llvmpipe) draws one screen-space quad per Gaussian, instanced,
            sorted back to front and blended with "over" into float32 render targets.
- "auto":   "gsplat" when torch sees CUDA, gsplat imports and its CUDA extension is built (`gsplat_status`), else "cpu".

The CPU renderer reproduces gsplat's forward pass (3DGS, Kerbl et al. 2023, as implemented by gsplat):
- EWA splatting: Sigma = R S S^T R^T in the world; Sigma_cam = W Sigma W^T; Sigma_2d = J Sigma_cam J^T with the
  perspective Jacobian J at the mean, its x/z and y/z clamped to 1.3x the field of view like gsplat; plus gsplat's
  0.3 px^2 low-pass ("eps2d") on the diagonal.
- alpha = min(0.999, opacity * exp(-0.5 d^T Sigma_2d^-1 d)) at the pixel centre, discarded below 1/255 (gsplat's
  ALPHA_THRESHOLD), composited in the order of the means' camera depth.
- quad half-extent 3.33 sigma per axis (gsplat 1.5's radius): exp(-0.5 * 3.33^2) < 1/255, so every pixel with a
  non-discarded alpha lies inside the quad and the quad changes nothing but the cost.
- rgb = sum_i c_i a_i T_i (premultiplied, black background), alpha = 1 - prod_i (1 - a_i),
  depth = sum_i z_i a_i T_i / alpha (gsplat's "ED" expected depth; 0 where alpha is 0).
Back-to-front "over" (dst = src + (1 - a_src) dst with premultiplied src) gives exactly those sums. The one thing
it cannot do is gsplat's early stop: gsplat ends a pixel at the first Gaussian that would take its transmittance
T to 1e-4 or below, and leaves that Gaussian out. What is lost is that Gaussian's a T <= 1e-4 a / (1 - a): at most
9e-4 for opacities <= 0.9 (the memory's), but up to ~0.1 where a Gaussian with opacity >= 0.999 meets a pixel
whose T is already below 0.1.

`rasterize_reference` is the brute-force per-pixel composite in numpy (front to back; gsplat's early stop on or
off): slow, for tests only.

Measured design choice (bench/bench_splat.py; docs/architecture.md, "The scene memory"): a pure-torch tile rasterizer ran 56-92 ms for 20k
Gaussians on this 2-core CPU; llvmpipe rasterizes one point sprite per Gaussian in a few ms (about 3x cheaper than
instanced quads, which it replaced), and doing the EWA projection in
the vertex shader keeps numpy's per-frame work to one depth sort.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.glcontext import borrowed, preserving_current
from engine.recording import note_gl
from splat.gaussians import largest_scale

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat: fragments below this are skipped
ALPHA_MAX = 0.999  # gsplat clamps each Gaussian's alpha to this
EPS2D = 0.3  # gsplat's screen-space low-pass, px^2 added to the 2D covariance diagonal
RADIUS_SIGMAS = 3.33  # gsplat 1.5's quad radius in standard deviations per axis
T_STOP = 1e-4  # gsplat stops a pixel once transmittance would fall to this (exclusive)

BACKENDS = ("auto", "cpu", "gsplat")


@dataclass
class RenderResult:
    """Rendered images (numpy float32) for C cameras.

    rgb:   [C, H, W, 3] premultiplied colour in [0, 1] over a black background
    depth: [C, H, W] expected depth in metres (gsplat "ED"), 0 where nothing was drawn
    alpha: [C, H, W] coverage 1 - prod(1 - a_i) in [0, 1]
    extra: [C, H, W] the expected value of a per-Gaussian scalar (`rasterize(extras=...)`), composited like the
           depth and normalised by the coverage the same way (0 where nothing was drawn); None when not asked for
    """

    rgb: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray
    extra: np.ndarray | None = None


# ---------------------------------------------------------------------------------------------------------------
# Inputs


def _numpy(x: Any, name: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    """Accept numpy or torch (any device); return contiguous float32 numpy, checking the trailing shape."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 1 + len(shape_tail) or tuple(arr.shape[1:]) != shape_tail:
        want = "[N" + "".join(f", {s}" for s in shape_tail) + "]"
        raise ValueError(f"{name} must be {want}, got shape {tuple(arr.shape)}")
    return arr


@dataclass
class _Inputs:
    means: np.ndarray  # [N, 3]
    quats: np.ndarray  # [N, 4]
    scales: np.ndarray  # [N, 3]
    opacities: np.ndarray  # [N]
    colors: np.ndarray  # [N, 3]
    viewmats: np.ndarray  # [C, 4, 4]
    Ks: np.ndarray  # [C, 3, 3]
    extras: np.ndarray | None = None  # [N]


def _check_inputs(means: Any, quats: Any, scales: Any, opacities: Any, colors: Any, viewmats: Any, Ks: Any,
                  width: int, height: int, extras: Any = None) -> _Inputs:
    inp = _Inputs(_numpy(means, "means", (3,)), _numpy(quats, "quats", (4,)), _numpy(scales, "scales", (3,)),
                  _numpy(opacities, "opacities", ()), _numpy(colors, "colors", (3,)),
                  _numpy(viewmats, "viewmats", (4, 4)), _numpy(Ks, "Ks", (3, 3)),
                  None if extras is None else _numpy(extras, "extras", ()))
    n = inp.means.shape[0]
    for name in ("quats", "scales", "opacities", "colors") + (("extras",) if extras is not None else ()):
        if getattr(inp, name).shape[0] != n:
            raise ValueError(f"{name} has {getattr(inp, name).shape[0]} rows but means has {n}")
    if inp.viewmats.shape[0] != inp.Ks.shape[0]:
        raise ValueError(f"viewmats has {inp.viewmats.shape[0]} cameras but Ks has {inp.Ks.shape[0]}")
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1 (got {width}x{height})")
    return inp


# ---------------------------------------------------------------------------------------------------------------
# The one public render function


def rasterize(means: Any, quats: Any, scales: Any, opacities: Any, colors: Any, viewmats: Any, Ks: Any,
              width: int, height: int, near_plane: float = 0.05, far_plane: float = 100.0,
              backend: str = "auto", extras: Any = None) -> RenderResult:
    """Render N Gaussians into C cameras, like `gsplat.rasterization(..., render_mode="RGB+ED")`.

    means [N, 3], quats [N, 4] (wxyz, normalised here as gsplat does), scales [N, 3] (linear), opacities [N] in
    [0, 1], colors [N, 3] in [0, 1], viewmats [C, 4, 4] world-to-camera (OpenCV axes), Ks [C, 3, 3] in pixels;
    numpy or torch. Gaussians whose mean has camera depth outside (near_plane, far_plane) are skipped.
    `extras` [N]: one more scalar per Gaussian, rendered like the depth (gsplat: a fourth colour channel; the CPU
    renderer: a spare channel of its depth target, so it costs no second pass) into RenderResult.extra.
    Returns RenderResult with numpy float32 rgb [C, H, W, 3], depth [C, H, W], alpha [C, H, W] (, extra).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        backend = "gsplat" if gsplat_available() else "cpu"
    if backend == "gsplat":
        return _rasterize_gsplat(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                 near_plane, far_plane, extras)
    inp = _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, extras)
    return _gl_renderer().render(inp, width, height, near_plane, far_plane)


_GSPLAT_STATUS: str | None = None
GSPLAT_BUILD_HINT = ('build it once with: python -c "from gsplat.cuda._backend import _C" (needs nvcc; minutes; '
                     'TORCH_CUDA_ARCH_LIST=<your GPU, e.g. 9.0> makes it faster)')


def gsplat_status() -> str:
    """Whether `rasterize` can use gsplat here, decided once per process without compiling anything:
    "ready" (CUDA, gsplat imports, and its CUDA extension is prebuilt or already JIT-built), else why not.

    gsplat's PyPI wheel holds sources only and JIT-compiles its CUDA extension at its first call (minutes, with
    nvcc); "auto" does not start that in the middle of a dream: it renders on the CPU until the extension is built.
    """
    global _GSPLAT_STATUS
    if _GSPLAT_STATUS is None:
        _GSPLAT_STATUS = _probe_gsplat()
    return _GSPLAT_STATUS


def _probe_gsplat() -> str:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import gsplat  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"gsplat does not import ({type(e).__name__}: {e})"
    try:
        from gsplat import csrc  # noqa: F401  (a prebuilt wheel / setup.py build)

        return "ready"
    except ImportError:
        pass
    import sys

    if getattr(sys.modules.get("gsplat.cuda._backend"), "_C", None) is not None:
        return "ready"  # built (or loaded) earlier in this process
    try:
        from torch.utils.cpp_extension import _get_build_directory

        build = Path(_get_build_directory("gsplat_cuda", verbose=False))
    except Exception as e:
        return f"gsplat's JIT build directory is unknown ({e})"
    if (build / "gsplat_cuda.so").exists():
        return "ready"
    return f"gsplat's CUDA extension is not built yet ({build}); {GSPLAT_BUILD_HINT}"


def gsplat_available() -> bool:
    """True when torch sees CUDA, gsplat imports and its CUDA extension is built (`gsplat_status`)."""
    return gsplat_status() == "ready"


def _rasterize_gsplat(means: Any, quats: Any, scales: Any, opacities: Any, colors: Any, viewmats: Any, Ks: Any,
                      width: int, height: int, near_plane: float, far_plane: float, extras: Any = None) -> RenderResult:
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("backend='gsplat' needs CUDA (gsplat has no CPU rasterizer); use backend='cpu' or 'auto'")
    try:
        import gsplat
        from gsplat.cuda._backend import _C  # builds the extension on first use when it is not built (minutes)
    except ImportError as e:
        raise RuntimeError(f"backend='gsplat': gsplat is not installed ({e}); pip install gsplat, or use backend='cpu'") from None
    if _C is None:
        raise RuntimeError("backend='gsplat': gsplat's CUDA extension is not available (no CUDA toolkit to build it "
                           f"with?); {GSPLAT_BUILD_HINT}; or use backend='cpu'")

    inp = _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, extras)
    C = inp.viewmats.shape[0]
    ne = 0 if inp.extras is None else 1
    if inp.means.shape[0] == 0:
        zero = np.zeros((C, height, width), np.float32)
        return RenderResult(np.zeros((C, height, width, 3), np.float32), zero, zero.copy(),
                            zero.copy() if ne else None)
    # One host-to-device copy of the Gaussians (the memory keeps them on the host) and one copy of the image back.
    cols = inp.colors if not ne else np.concatenate([inp.colors, inp.extras[:, None]], 1)
    packed = torch.from_numpy(np.concatenate([inp.means, inp.quats, inp.scales, inp.opacities[:, None], cols], 1))
    m, q, sc, op, col = (x.contiguous() for x in packed.cuda().split([3, 4, 3, 1, 3 + ne], dim=1))
    cams = torch.from_numpy(np.concatenate([inp.viewmats.reshape(C, 16), inp.Ks.reshape(C, 9)], 1)).cuda()
    out, alphas, _ = gsplat.rasterization(
        m, q, sc, op[:, 0].contiguous(), col, cams[:, :16].reshape(C, 4, 4).contiguous(),
        cams[:, 16:].reshape(C, 3, 3).contiguous(), width, height, near_plane=near_plane, far_plane=far_plane,
        eps2d=EPS2D, render_mode="RGB+ED", packed=False)
    res = torch.cat([out.float(), alphas.float()], -1).cpu().numpy()  # [C, H, W, 5 (+1)]: RGB, (extra,) ED, alpha
    extra = None
    if ne:  # premultiplied like the colours: normalised by the coverage, as the expected depth is
        extra = np.ascontiguousarray(res[..., 3] / np.maximum(res[..., -1], 1e-10) * (res[..., -1] > 0))
    return RenderResult(rgb=np.ascontiguousarray(res[..., :3]), depth=np.ascontiguousarray(res[..., 3 + ne]),
                        alpha=np.ascontiguousarray(res[..., 4 + ne]), extra=extra)


# ---------------------------------------------------------------------------------------------------------------
# CPU renderer: moderngl, one point sprite per Gaussian

_VERT = """
#version 330
// one vertex (a point sprite) per Gaussian, with gsplat's parameters
in vec3 in_mean;
in vec4 in_quat;   // w, x, y, z
in vec3 in_scale;  // linear sigmas
in float in_opacity;
in vec3 in_color;
in float in_extra;

uniform mat3 u_R;      // world -> camera rotation
uniform vec3 u_t;      // world -> camera translation
uniform vec4 u_K;      // fx, fy, cx, cy
uniform vec2 u_size;   // image width, height (pixels)
uniform vec4 u_tile;   // this pass's tile in image pixels: x0, y0, width, height
uniform vec2 u_clip;   // near, far
uniform float u_eps2d;
uniform float u_radius;

flat out vec3 v_color;
flat out float v_opacity;
flat out vec3 v_conic;
flat out vec2 v_center;
flat out float v_depth;
flat out float v_extra;

void cull() {
    gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // outside the clip volume: the point is dropped
    gl_PointSize = 1.0;
}

void main() {
    vec3 p = u_R * in_mean + u_t;
    v_color = in_color;
    v_opacity = in_opacity;
    v_depth = p.z;
    v_extra = in_extra;
    if (p.z <= u_clip.x || p.z >= u_clip.y) { cull(); return; }
    // 3D covariance from rotation and scale (3DGS): Sigma = M M^T with M = R S, here already in camera axes
    vec4 q = normalize(in_quat);
    float w = q.x, x = q.y, y = q.z, z = q.w;
    mat3 Rq = mat3(  // column-major: mat3(column 0, column 1, column 2)
        1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
        2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
        2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
    mat3 M = u_R * Rq * mat3(in_scale.x, 0.0, 0.0, 0.0, in_scale.y, 0.0, 0.0, 0.0, in_scale.z);
    mat3 S = M * transpose(M);
    // EWA: Jacobian of the perspective projection at the mean, x/z and y/z clamped like gsplat's
    float fx = u_K.x, fy = u_K.y, cx = u_K.z, cy = u_K.w;
    float tanx = 0.5 * u_size.x / fx, tany = 0.5 * u_size.y / fy;
    float tx = p.z * clamp(p.x / p.z, -(cx / fx + 0.3 * tanx), (u_size.x - cx) / fx + 0.3 * tanx);
    float ty = p.z * clamp(p.y / p.z, -(cy / fy + 0.3 * tany), (u_size.y - cy) / fy + 0.3 * tany);
    vec3 j0 = vec3(fx / p.z, 0.0, -fx * tx / (p.z * p.z));
    vec3 j1 = vec3(0.0, fy / p.z, -fy * ty / (p.z * p.z));
    float a = dot(j0, S * j0) + u_eps2d;
    float b = dot(j0, S * j1);
    float c = dot(j1, S * j1) + u_eps2d;
    float det = max(a * c - b * b, 1e-10);
    v_conic = vec3(c / det, -b / det, a / det);
    v_center = vec2(fx * p.x / p.z + cx, fy * p.y / p.z + cy);
    // gsplat's box (3.33 sigma per axis) clipped to this tile; the point sprite is that clipped box's
    // bounding square, so it never exceeds the tile (tiles are <= 254 px: inside GL's point size limit)
    vec2 ext = u_radius * sqrt(vec2(a, c));
    vec2 lo = max(v_center - ext, u_tile.xy);
    vec2 hi = min(v_center + ext, u_tile.xy + u_tile.zw);
    if (any(greaterThanEqual(lo, hi))) { cull(); return; }
    vec2 mid = 0.5 * (lo + hi);
    // no margin: a pixel centre outside the box is past 3.33 sigma on an axis, below the alpha threshold there
    gl_PointSize = max(hi.x - lo.x, hi.y - lo.y);
    // image pixels (x right, y down) -> this tile's NDC (y up); rows are flipped on readback
    vec2 ndc = 2.0 * (mid - u_tile.xy) / u_tile.zw - 1.0;
    gl_Position = vec4(ndc.x, -ndc.y, 0.0, 1.0);
}
"""

_FRAG = """
#version 330
flat in vec3 v_color;
flat in float v_opacity;
flat in vec3 v_conic;
flat in vec2 v_center;
flat in float v_depth;
flat in float v_extra;
uniform vec2 u_size;
uniform float u_alpha_max;
uniform float u_alpha_min;
layout(location = 0) out vec4 out_color;
layout(location = 1) out vec4 out_depth;

void main() {
    // gl_FragCoord is the pixel centre in window coordinates (y up): flip to image pixel coordinates
    vec2 px = vec2(gl_FragCoord.x, u_size.y - gl_FragCoord.y);
    vec2 d = v_center - px;
    float sigma = 0.5 * (v_conic.x * d.x * d.x + v_conic.z * d.y * d.y) + v_conic.y * d.x * d.y;
    float alpha = min(u_alpha_max, v_opacity * exp(-sigma));
    if (sigma < 0.0 || alpha < u_alpha_min) discard;
    // premultiplied: blending ONE, ONE_MINUS_SRC_ALPHA is "over", back to front
    out_color = vec4(v_color * alpha, alpha);
    out_depth = vec4(v_depth * alpha, v_extra * alpha, 0.0, alpha);
}
"""

_INSTANCE_FLOATS = 15  # mean 3, quat 4, scale 3, opacity 1, color 3, extra 1
_TILE = 254  # largest point sprite llvmpipe draws is 255 px (GL_POINT_SIZE_RANGE); larger images go in tiles


def _cull_mask(inp: _Inputs, c: int, width: int, height: int, near: float, far: float) -> np.ndarray:
    """Conservative frustum cull [N] bool for camera c: keep Gaussians whose 3.33-sigma box may touch the image.

    The 2D sigma is bounded by s_max * f / z * sqrt(1 + lim^2) (the Jacobian's row norm with gsplat's clamp),
    so nothing visible is dropped; the vertex shader does the exact test.
    """
    R, t, K = inp.viewmats[c, :3, :3], inp.viewmats[c, :3, 3], inp.Ks[c]
    p = inp.means @ R.T + t
    z = p[:, 2]
    keep = (z > near) & (z < far)
    zs = np.where(keep, z, 1.0)
    fx, fy, cx, cy = (float(v) for v in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    u = fx * p[:, 0] / zs + cx
    v = fy * p[:, 1] / zs + cy
    lim = max(cx, width - cx) / fx * 1.3 + max(cy, height - cy) / fy * 1.3  # generous bound on |x/z|, |y/z|
    sig = largest_scale(inp.scales) * max(fx, fy) / zs * np.sqrt(1.0 + lim * lim)
    r = RADIUS_SIGMAS * np.sqrt(sig * sig + EPS2D) + 1.0
    keep &= (u + r > 0) & (u - r < width) & (v + r > 0) & (v - r < height)
    return keep


class _GLRasterizer:
    """One headless GL context for the process; framebuffers cached per size. Use through `rasterize`.

    One point sprite per Gaussian: llvmpipe sets up a point about 3x faster than an instanced quad (two
    triangles) and runs the EWA vertex shader once per Gaussian instead of four times (bench/bench_splat.py).
    """

    def __init__(self) -> None:
        import moderngl

        self._mgl = moderngl
        with preserving_current():  # creating a context makes it current: give the caller's back
            self.ctx = moderngl.create_standalone_context(backend="egl")
        with borrowed(self.ctx):
            self.prog = self.ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
            self.prog["u_eps2d"].value = EPS2D
            self.prog["u_radius"].value = RADIUS_SIGMAS
            self.prog["u_alpha_max"].value = ALPHA_MAX
            self.prog["u_alpha_min"].value = ALPHA_THRESHOLD
            note_gl("memory", self.ctx)  # recordings made in this process name the renderer and its Mesa version
        self.capacity = 0
        self.buf: Any = None
        self.vao: Any = None
        self.fbos: dict[tuple[int, int], Any] = {}
        self.lock = threading.Lock()

    def _ensure_capacity(self, n: int) -> None:
        if n <= self.capacity:
            return
        cap = max(1024, 1 << int(np.ceil(np.log2(n))))  # grow by powers of two: few reallocations
        if self.vao is not None:
            self.vao.release()
            self.buf.release()
        self.buf = self.ctx.buffer(reserve=cap * _INSTANCE_FLOATS * 4, dynamic=True)
        self.vao = self.ctx.vertex_array(self.prog, [
            (self.buf, "3f 4f 3f 1f 3f 1f", "in_mean", "in_quat", "in_scale", "in_opacity", "in_color", "in_extra")])
        self.capacity = cap

    def _fbo(self, width: int, height: int) -> Any:
        key = (width, height)
        if key not in self.fbos:
            color = self.ctx.renderbuffer((width, height), components=4, dtype="f4")
            depth = self.ctx.renderbuffer((width, height), components=4, dtype="f4")
            self.fbos[key] = self.ctx.framebuffer(color_attachments=[color, depth])
        return self.fbos[key]

    def render(self, inp: _Inputs, width: int, height: int, near: float, far: float) -> RenderResult:
        C = inp.viewmats.shape[0]
        rgb = np.zeros((C, height, width, 3), np.float32)
        depth = np.zeros((C, height, width), np.float32)
        alpha = np.zeros((C, height, width), np.float32)
        extra = np.zeros((C, height, width), np.float32) if inp.extras is not None else None
        ext = inp.extras if inp.extras is not None else np.zeros(len(inp.means), np.float32)
        mgl = self._mgl
        with self.lock, borrowed(self.ctx):
            fbo = self._fbo(width, height)
            for c in range(C):
                R, t = inp.viewmats[c, :3, :3], inp.viewmats[c, :3, 3]
                keep = np.flatnonzero(_cull_mask(inp, c, width, height, near, far))
                z = inp.means[keep] @ R[2] + t[2]  # camera depth of each mean: the sort key, like gsplat
                # back to front = the reverse of the reference's stable front-to-back order
                order = keep[np.argsort(z, kind="stable")[::-1]]
                fbo.use()
                fbo.clear(0.0, 0.0, 0.0, 0.0)
                if order.size:
                    self._ensure_capacity(order.size)
                    packed = np.concatenate([inp.means[order], inp.quats[order], inp.scales[order],
                                             inp.opacities[order, None], inp.colors[order], ext[order, None]], 1)
                    self.buf.write(packed.tobytes())
                    self.prog["u_R"].write(np.ascontiguousarray(R.T).tobytes())  # GLSL reads column-major
                    self.prog["u_t"].value = tuple(float(v) for v in t)
                    K = inp.Ks[c]
                    self.prog["u_K"].value = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
                    self.prog["u_size"].value = (float(width), float(height))
                    self.prog["u_clip"].value = (float(near), float(far))
                    self.ctx.disable(mgl.DEPTH_TEST | mgl.CULL_FACE)
                    self.ctx.enable(mgl.BLEND | mgl.PROGRAM_POINT_SIZE)
                    self.ctx.blend_func = mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA
                    for y0 in range(0, height, _TILE):
                        for x0 in range(0, width, _TILE):
                            tw, th = min(_TILE, width - x0), min(_TILE, height - y0)
                            gl_rect = (x0, height - y0 - th, tw, th)  # GL's origin is bottom-left
                            self.ctx.viewport = gl_rect
                            self.ctx.scissor = gl_rect  # wide points are not clipped to the viewport
                            self.prog["u_tile"].value = (float(x0), float(y0), float(tw), float(th))
                            self.vao.render(mgl.POINTS, vertices=int(order.size))
                    self.ctx.scissor = None
                    self.ctx.disable(mgl.BLEND)
                col = np.frombuffer(fbo.read(components=4, attachment=0, dtype="f4"), np.float32)
                dep = np.frombuffer(fbo.read(components=4, attachment=1, dtype="f4"), np.float32)
                col = col.reshape(height, width, 4)[::-1]  # GL rows are bottom-up
                dep = dep.reshape(height, width, 4)[::-1]
                rgb[c] = col[..., :3]
                alpha[c] = col[..., 3]
                depth[c] = dep[..., 0] / np.maximum(col[..., 3], 1e-10)  # gsplat's ED: normalise by coverage
                if extra is not None:
                    extra[c] = dep[..., 1] / np.maximum(col[..., 3], 1e-10)
        return RenderResult(rgb=rgb, depth=depth, alpha=alpha, extra=extra)

    def close(self) -> None:
        with preserving_current():
            self.ctx.release()


_RENDERER: _GLRasterizer | None = None
_RENDERER_LOCK = threading.Lock()


def _gl_renderer() -> _GLRasterizer:
    """The process's CPU renderer, created on first use (one EGL context, shared by every caller)."""
    global _RENDERER
    with _RENDERER_LOCK:
        if _RENDERER is None:
            _RENDERER = _GLRasterizer()
        return _RENDERER


# ---------------------------------------------------------------------------------------------------------------
# Brute-force reference (tests only)


def _quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """quats [N, 4] wxyz (any norm) -> rotation matrices [N, 3, 3]."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


def rasterize_reference(means: Any, quats: Any, scales: Any, opacities: Any, colors: Any, viewmats: Any, Ks: Any,
                        width: int, height: int, near_plane: float = 0.05, far_plane: float = 100.0,
                        early_stop: bool = True, extras: Any = None) -> RenderResult:
    """Brute force in float64: for every pixel centre evaluate every Gaussian's projected 2D Gaussian and composite
    front to back in the order of the means' camera depth (gsplat's order), with gsplat's alpha clamp and threshold,
    and (early_stop=True) gsplat's exclusive stop at transmittance 1e-4; early_stop=False is what the CPU renderer
    computes. Same arguments and result as `rasterize`. O(C H W N): tests only.
    """
    inp = _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, width, height, extras)
    C = inp.viewmats.shape[0]
    rgb = np.zeros((C, height, width, 3), np.float32)
    depth = np.zeros((C, height, width), np.float32)
    alpha = np.zeros((C, height, width), np.float32)
    extra = np.zeros((C, height, width), np.float32) if inp.extras is not None else None
    means64 = inp.means.astype(np.float64)
    Rq = _quat_to_rotmat(inp.quats.astype(np.float64))
    M = Rq * inp.scales.astype(np.float64)[:, None, :]  # R S
    cov_world = M @ M.transpose(0, 2, 1)  # [N, 3, 3]
    py, px = np.mgrid[0:height, 0:width] + 0.5  # pixel centres
    for c in range(C):
        W = inp.viewmats[c].astype(np.float64)
        K = inp.Ks[c].astype(np.float64)
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        p = means64 @ W[:3, :3].T + W[:3, 3]
        z = p[:, 2]
        idx = np.flatnonzero((z > near_plane) & (z < far_plane))
        idx = idx[np.argsort(z[idx], kind="stable")]  # front to back
        if idx.size == 0:
            continue
        p, zz = p[idx], z[idx]
        cov = W[:3, :3] @ cov_world[idx] @ W[:3, :3].T
        tanx, tany = 0.5 * width / fx, 0.5 * height / fy
        tx = zz * np.clip(p[:, 0] / zz, -(cx / fx + 0.3 * tanx), (width - cx) / fx + 0.3 * tanx)
        ty = zz * np.clip(p[:, 1] / zz, -(cy / fy + 0.3 * tany), (height - cy) / fy + 0.3 * tany)
        J = np.zeros((idx.size, 2, 3))
        J[:, 0, 0] = fx / zz
        J[:, 0, 2] = -fx * tx / zz**2
        J[:, 1, 1] = fy / zz
        J[:, 1, 2] = -fy * ty / zz**2
        cov2 = J @ cov @ J.transpose(0, 2, 1) + EPS2D * np.eye(2)
        a, b, d = cov2[:, 0, 0], cov2[:, 0, 1], cov2[:, 1, 1]
        det = np.maximum(a * d - b * b, 1e-10)
        ca, cb, cc = d / det, -b / det, a / det  # conic
        u = fx * p[:, 0] / zz + cx
        v = fy * p[:, 1] / zz + cy
        dx = u[:, None, None] - px[None]  # [n, H, W]
        dy = v[:, None, None] - py[None]
        sigma = 0.5 * (ca[:, None, None] * dx * dx + cc[:, None, None] * dy * dy) + cb[:, None, None] * dx * dy
        al = np.minimum(ALPHA_MAX, inp.opacities[idx].astype(np.float64)[:, None, None] * np.exp(-sigma))
        al = np.where((sigma < 0) | (al < ALPHA_THRESHOLD), 0.0, al)
        T = np.ones((height, width))
        acc_c = np.zeros((height, width, 3))
        acc_d = np.zeros((height, width))
        acc_e = np.zeros((height, width))
        ext = inp.extras[idx].astype(np.float64) if inp.extras is not None else np.zeros(idx.size)
        done = np.zeros((height, width), bool)
        cols = inp.colors[idx].astype(np.float64)
        for i in range(idx.size):  # front to back
            a_i = al[i]
            next_T = T * (1 - a_i)
            stop = (next_T <= T_STOP) if early_stop else np.zeros_like(done)
            done |= stop & (a_i > 0)
            w = np.where(done, 0.0, a_i * T)
            acc_c += w[..., None] * cols[i]
            acc_d += w * zz[i]
            acc_e += w * ext[i]
            T = np.where(done | (a_i == 0), T, next_T)
        rgb[c] = acc_c
        alpha[c] = 1 - T
        depth[c] = acc_d / np.maximum(1 - T, 1e-10)
        if extra is not None:
            extra[c] = acc_e / np.maximum(1 - T, 1e-10)
    return RenderResult(rgb=rgb, depth=depth, alpha=alpha, extra=extra)
