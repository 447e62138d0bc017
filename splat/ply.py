"""Read and write the standard 3D Gaussian Splatting .ply (the layout of the 3DGS reference code, which splat
viewers such as SuperSplat and antimatter15/splat open).

One binary little-endian `vertex` element with float32 properties, in this order:
    x, y, z                 the mean
    nx, ny, nz              unused normals (zeros), kept because tools expect them
    f_dc_0, f_dc_1, f_dc_2  colour as the degree-0 spherical-harmonic coefficient: (c - 0.5) / C0
    opacity                 the logit of the opacity
    scale_0..2              the log of the linear scales
    rot_0..3                the rotation quaternion w, x, y, z (viewers normalise it)
No f_rest_* (degree 0 only: our colours are view-independent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.files import atomic_path
from splat.gaussians import Gaussians

SH_C0 = 0.28209479177387814  # the degree-0 spherical-harmonic basis constant, 1 / (2 sqrt(pi))

PROPERTIES = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
              "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
REQUIRED = [p for p in PROPERTIES if p not in ("nx", "ny", "nz")]

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def write_ply(path: str | Path, gaussians: Gaussians) -> int:
    """Write the live Gaussians as a 3DGS .ply. Returns how many were written."""
    n = len(gaussians)
    eps = 1e-6
    op = np.clip(gaussians.live("opacities").astype(np.float64), eps, 1 - eps)
    cols = {
        "x": gaussians.live("means")[:, 0], "y": gaussians.live("means")[:, 1], "z": gaussians.live("means")[:, 2],
        "nx": np.zeros(n), "ny": np.zeros(n), "nz": np.zeros(n),
        "opacity": np.log(op / (1 - op)),  # 3DGS stores opacity through a sigmoid
    }
    for i in range(3):
        cols[f"f_dc_{i}"] = (gaussians.live("colors")[:, i] - 0.5) / SH_C0
        cols[f"scale_{i}"] = np.log(np.maximum(gaussians.live("scales")[:, i], 1e-12))  # and scales through exp
    for i in range(4):
        cols[f"rot_{i}"] = gaussians.live("quats")[:, i]
    data = np.empty(n, dtype=[(p, "<f4") for p in PROPERTIES])
    for p in PROPERTIES:
        data[p] = cols[p]
    header = "ply\nformat binary_little_endian 1.0\ncomment written by dreamwalk splat.ply\n"
    header += f"element vertex {n}\n" + "".join(f"property float {p}\n" for p in PROPERTIES) + "end_header\n"
    with atomic_path(path) as tmp:  # whole or not at all: a full disk or a kill leaves the old file as it was
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.tobytes())
    return n


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS .ply (binary little-endian vertex element) back into Gaussians (ticks 0, static).

    Raises ValueError naming what is missing when the file is not a 3DGS .ply.
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise ValueError(f"{path} is not a .ply file (no 'ply' magic line)")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise ValueError(f"{path}: the .ply header has no end_header line")
            words = line.decode("ascii", errors="replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                current = {"name": words[1], "count": int(words[2]), "props": []}
                elements.append(current)
            elif words[0] == "property":
                if current is None:
                    raise ValueError(f"{path}: a property comes before any element")
                if words[1] == "list":
                    raise ValueError(f"{path}: list property '{words[-1]}' in element '{current['name']}' is not "
                                     "part of a 3DGS .ply")
                if words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unknown property type '{words[1]}'")
                current["props"].append((words[2], "<" + _PLY_TYPES[words[1]]))
        if fmt != "binary_little_endian":
            raise ValueError(f"{path}: format is {fmt!r}; a 3DGS .ply is binary_little_endian")
        if not elements or elements[0]["name"] != "vertex":
            raise ValueError(f"{path}: the first element must be 'vertex' (a 3DGS .ply), found "
                             f"{[e['name'] for e in elements]}")
        vertex = elements[0]
        names = [p for p, _ in vertex["props"]]
        missing = [p for p in REQUIRED if p not in names]
        if missing:
            raise ValueError(f"{path} is not a 3DGS .ply: its vertex element lacks {missing} (has {names})")
        data = np.frombuffer(f.read(np.dtype(vertex["props"]).itemsize * vertex["count"]),
                             dtype=np.dtype(vertex["props"]), count=vertex["count"])
    n = int(vertex["count"])
    g = Gaussians.empty(max(n, 1))
    col = lambda *ps: np.stack([data[p].astype(np.float32) for p in ps], 1)  # noqa: E731
    g.append(means=col("x", "y", "z"), quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
             scales=np.exp(col("scale_0", "scale_1", "scale_2")),
             opacities=(1 / (1 + np.exp(-data["opacity"].astype(np.float64)))).astype(np.float32),
             colors=np.clip(col("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5, 0, 1), tick=0)
    return g
