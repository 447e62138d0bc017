"""Gaussian-splat scene memory (gsplat conventions): Gaussians, cameras, rendering, the memory.

    from splat import SceneMemory, rasterize
    memory = SceneMemory(width=64, height=64)             # splat.memory: insert / render / obstacles / reset
    memory.insert(rgb, depth, cam_to_world, K, tick)
    view = memory.render(next_cam_to_world, K, tick + 1)  # .rgb uint8, .depth, .alpha

- splat.gaussians: the fixed-capacity struct of arrays (means, quats wxyz, scales, opacities, colors, ticks).
- splat.render:    `rasterize(...)` with gsplat's arguments (gsplat on CUDA, moderngl point sprites on CPU)
                   and `rasterize_reference` (brute force, for tests).
- splat.camera:    pose / intrinsics checks, world<->camera, lifting and projecting pixels.
- splat.ply:       the standard 3DGS .ply; `python -m splat.export RECORDING --ply OUT.ply`.
"""

from splat.gaussians import Gaussians
from splat.memory import MemoryConfig, MemoryRender, SceneMemory, SceneMemoryLike
from splat.ply import PlyError, read_ply, write_ply
from splat.render import RenderResult, rasterize, rasterize_reference

__all__ = ["Gaussians", "MemoryConfig", "MemoryRender", "SceneMemory", "SceneMemoryLike", "RenderResult",
           "rasterize", "rasterize_reference", "PlyError", "read_ply", "write_ply"]
