"""Gaussian-splat scene memory (gsplat conventions): Gaussians, cameras, rendering, the memory."""
