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

from engine.files import SharedFileError, atomic_path, brief, check_regular
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


class PlyError(ValueError):
    """A file that is not a 3DGS .ply this reader can take (the message names the file and what is wrong)."""


PLY_HEADER_LIMIT = 64 << 10  # bytes of header a .ply may have


def read_ply(path: str | Path) -> Gaussians:
    """Read a 3DGS .ply (binary little-endian vertex element) back into Gaussians (ticks 0, static).

    Raises PlyError naming what is wrong when the file is not a 3DGS .ply: not a regular file, a header over 64 KB,
    a vertex count the file's size does not hold, non-finite values.
    """
    path = Path(path)
    try:
        size = check_regular(path)
    except SharedFileError as e:
        raise PlyError(str(e)) from None
    with open(path, "rb") as f:
        if f.readline(16).strip() != b"ply":
            raise PlyError(f"{path} is not a .ply file (no 'ply' magic line)")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline(1024)
            if not line:
                raise PlyError(f"{path}: the .ply header has no end_header line")
            if f.tell() > PLY_HEADER_LIMIT or not line.endswith(b"\n"):
                raise PlyError(f"{path}: the .ply header is over {PLY_HEADER_LIMIT} bytes or a line of it over 1 KB")
            words = line.decode("ascii", errors="replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1] if len(words) > 1 else None
            elif words[0] == "element":
                if len(words) != 3 or not words[2].isdigit():
                    raise PlyError(f"{path}: the header line {brief(line.decode('ascii', 'replace').strip())} is not "
                                   "'element NAME COUNT'")
                current = {"name": words[1], "count": int(words[2]), "props": []}
                elements.append(current)
            elif words[0] == "property":
                if current is None:
                    raise PlyError(f"{path}: a property comes before any element")
                if len(words) != 3 or words[1] == "list":
                    raise PlyError(f"{path}: the property line {brief(line.decode('ascii', 'replace').strip())} in "
                                   f"element '{current['name']}' is not 'property TYPE NAME' (a 3DGS .ply has no lists)")
                if words[1] not in _PLY_TYPES:
                    raise PlyError(f"{path}: unknown property type {brief(words[1])}")
                if any(words[2] == name for name, _ in current["props"]):
                    raise PlyError(f"{path}: property {brief(words[2])} appears twice")
                current["props"].append((words[2], "<" + _PLY_TYPES[words[1]]))
        if fmt != "binary_little_endian":
            raise PlyError(f"{path}: format is {brief(fmt)}; a 3DGS .ply is binary_little_endian")
        if not elements or elements[0]["name"] != "vertex":
            raise PlyError(f"{path}: the first element must be 'vertex' (a 3DGS .ply), found "
                           f"{brief([e['name'] for e in elements])}")
        vertex = elements[0]
        names = [p for p, _ in vertex["props"]]
        missing = [p for p in REQUIRED if p not in names]
        if missing:
            raise PlyError(f"{path} is not a 3DGS .ply: its vertex element lacks {brief(missing)} (has {brief(names)})")
        dtype = np.dtype(vertex["props"])
        n = int(vertex["count"])
        if n * dtype.itemsize > size - f.tell():
            raise PlyError(f"{path}: the header says {n} Gaussians of {dtype.itemsize} bytes, but the file holds "
                           f"{size - f.tell()} bytes after it (truncated?)")
        data = np.frombuffer(f.read(dtype.itemsize * n), dtype=dtype, count=n)
    if not all(np.isfinite(data[p]).all() for p in REQUIRED):
        raise PlyError(f"{path}: some Gaussians hold NaN or infinite values")
    g = Gaussians.empty(max(n, 1))
    col = lambda *ps: np.stack([data[p].astype(np.float32) for p in ps], 1)  # noqa: E731
    with np.errstate(over="ignore"):  # exp of a huge log-scale is inf: a degenerate but finite-input Gaussian
        g.append(means=col("x", "y", "z"), quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
                 scales=np.exp(col("scale_0", "scale_1", "scale_2")),
                 opacities=(1 / (1 + np.exp(-data["opacity"].astype(np.float64)))).astype(np.float32),
                 colors=np.clip(col("f_dc_0", "f_dc_1", "f_dc_2") * SH_C0 + 0.5, 0, 1), tick=0)
    return g
