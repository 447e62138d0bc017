"""Seeded procedural level: a grid of rooms and corridors, their texture regions, landmarks and movers.

Everything here is plain numpy and a pure function of (config, seed): the renderer turns the arrays
into GL buffers once per level, physics reads the same boxes for collisions, and planners (the revisit
generator) read the cell grid. Layout:

    cell (ix, iz) spans x in [ix*cs, (ix+1)*cs], z in [iz*cs, (iz+1)*cs]   (cs = cell_size, metres)
    open cells belong to a texture region (a room or a corridor); solid cells are walls or rock
    walls are the solid cells next to an open one, merged into long boxes along x

Object ids (also drawn into the renderer's id image): 0 sky, 1 floor, 2 walls, STATIC_ID_BASE + i for
static landmark i, DYNAMIC_ID_BASE + k for mover k. Ids above DYNAMIC_ID_BASE form the dynamic mask.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np

from engine.arena.config import MAX_REGIONS, ArenaConfig

SKY_ID, FLOOR_ID, WALL_ID = 0, 1, 2
STATIC_ID_BASE = 100
DYNAMIC_ID_BASE = 10_000

# Instance "kind" read by the shader: region-textured surfaces look up the cell's region; objects use
# their own colour and pattern in object-local coordinates (so a spinning cube's pattern spins too).
KIND_REGION, KIND_OBJECT = 0.0, 1.0
N_PATTERNS = 10  # patterns the fragment shader knows (stripes, checkers, bricks, dots, ...)

MOVER_BOBBER, MOVER_PATROLLER, MOVER_DOOR = 0, 1, 2


@dataclass(frozen=True)
class Region:
    """A texture region: one room or one corridor, with its own pattern and palette."""

    id: int
    kind: str  # "room", "open" (large room) or "corridor"
    pattern: int  # wall pattern, 0..N_PATTERNS-1
    floor_pattern: int
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    color_c: tuple[float, float, float]  # trim band at the top of the walls
    scale: float  # pattern period, metres


@dataclass(frozen=True)
class Room:
    """A rectangle of open cells [x0, x1) x [z0, z1)."""

    x0: int
    z0: int
    x1: int
    z1: int
    region: int

    @property
    def centre_cell(self) -> tuple[int, int]:
        return (self.x0 + self.x1) // 2, (self.z0 + self.z1) // 2

    def interior(self) -> list[tuple[int, int]]:
        """Cells off the room's border ring; objects go here so the ring keeps every entrance connected."""
        return [(x, z) for x in range(self.x0 + 1, self.x1 - 1) for z in range(self.z0 + 1, self.z1 - 1)]


@dataclass(frozen=True)
class Landmark:
    """A static object (pillar, obelisk, crate, arch part, pedestal) as an axis-aligned box."""

    id: int
    kind: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    color: tuple[float, float, float]


@dataclass
class Level:
    """A generated level. Arrays use cell indices [ix, iz]; boxes are world-space metres.

    solid:    [GW, GD] bool, True for wall/rock cells
    region:   [GW, GD] int32, region id of open cells, -1 for solid
    blocked:  [GW, GD] bool, open cells that path planners must avoid (objects, doors, patrol lanes)
    static_*: per static instance (walls, floor, landmarks): center/half [N, 3], yaw [N],
              color [N, 3], params [N, 4] = (kind, pattern, scale, id), solid [N]
    mv_*:     per mover: kind [K], base/axis/half [K, 3], amp (m), period (s), phase (cycles),
              spin (rad/s) [K], color [K, 3], params [K, 4], solid [K]
    """

    config: ArenaConfig
    seed: int
    solid: np.ndarray
    region: np.ndarray
    blocked: np.ndarray
    regions: list[Region]
    rooms: list[Room]
    landmarks: list[Landmark]
    static_center: np.ndarray
    static_half: np.ndarray
    static_yaw: np.ndarray
    static_color: np.ndarray
    static_params: np.ndarray
    static_solid: np.ndarray
    mv_kind: np.ndarray
    mv_base: np.ndarray
    mv_axis: np.ndarray
    mv_half: np.ndarray
    mv_amp: np.ndarray
    mv_period: np.ndarray
    mv_phase: np.ndarray
    mv_spin: np.ndarray
    mv_color: np.ndarray
    mv_params: np.ndarray
    mv_solid: np.ndarray
    spawn_position: np.ndarray  # [3] feet position, metres
    spawn_yaw: float  # degrees
    sun_dir: np.ndarray  # [3] unit vector towards the sun
    solid_min: np.ndarray = field(init=False)  # [M, 3] static collision boxes
    solid_max: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        s = self.static_solid
        self.solid_min = self.static_center[s] - self.static_half[s]
        self.solid_max = self.static_center[s] + self.static_half[s]

    # -- grid helpers -----------------------------------------------------------------------------

    @property
    def size_m(self) -> tuple[float, float]:
        """(x extent, z extent) of the level in metres."""
        cs = self.config.cell_size
        return self.solid.shape[0] * cs, self.solid.shape[1] * cs

    def cell_of(self, x: float, z: float) -> tuple[int, int]:
        """Cell index containing world point (x, z), clamped to the grid."""
        cs = self.config.cell_size
        ix = min(max(int(math.floor(x / cs)), 0), self.solid.shape[0] - 1)
        iz = min(max(int(math.floor(z / cs)), 0), self.solid.shape[1] - 1)
        return ix, iz

    def cell_centre(self, ix: int, iz: int) -> np.ndarray:
        """World (x, 0, z) of a cell centre, [3] float64."""
        cs = self.config.cell_size
        return np.array([(ix + 0.5) * cs, 0.0, (iz + 0.5) * cs])

    def region_at(self, x: float, z: float) -> int:
        """Region id under world point (x, z); -1 inside rock."""
        return int(self.region[self.cell_of(x, z)])

    def region_table(self) -> np.ndarray:
        """Shader table [MAX_REGIONS, 3, 4] float32: (color_a, pattern), (color_b, scale), (color_c, floor_pattern)."""
        table = np.zeros((MAX_REGIONS, 3, 4), np.float32)
        for r in self.regions:
            table[r.id, 0] = (*r.color_a, r.pattern)
            table[r.id, 1] = (*r.color_b, r.scale)
            table[r.id, 2] = (*r.color_c, r.floor_pattern)
        return table

    # -- movers -----------------------------------------------------------------------------------

    def mover_poses(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Mover centres [K, 3] float64 and yaws [K] radians at time t = tick * dt seconds (pure function)."""
        t = float(t)
        u = t / self.mv_period + self.mv_phase  # cycles, [K]
        frac = u - np.floor(u)
        wave = np.sin(2 * np.pi * u)
        pingpong = 0.5 - 0.5 * np.cos(2 * np.pi * u)
        # Doors: shut 35% of the cycle, slide open over 15%, stay open 35%, slide shut over 15%.
        door = np.clip(np.minimum((frac - 0.35) / 0.15, (1.0 - frac) / 0.15), 0.0, 1.0)
        offset = np.where(self.mv_kind == MOVER_BOBBER, 0.0, np.where(self.mv_kind == MOVER_PATROLLER, pingpong, door))
        centers = self.mv_base + self.mv_axis * offset[:, None]
        centers[:, 1] += np.where(self.mv_kind == MOVER_BOBBER, self.mv_amp * wave, 0.0)
        yaw = self.mv_spin * t
        return centers, yaw

    def dynamic_solids(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Collision boxes of solid movers at time t (s): min [S, 3], max [S, 3] (solid movers never rotate)."""
        centers, _ = self.mover_poses(t)
        s = self.mv_solid
        return centers[s] - self.mv_half[s], centers[s] + self.mv_half[s]

    def door_open_fraction(self, t: float) -> np.ndarray:
        """Per door mover, how far it has slid open in [0, 1] at time t (s) (for tests and policies)."""
        centers, _ = self.mover_poses(t)
        doors = self.mv_kind == MOVER_DOOR
        span = np.linalg.norm(self.mv_axis[doors], axis=1)
        return np.linalg.norm(centers[doors] - self.mv_base[doors], axis=1) / np.maximum(span, 1e-9)


# -- generation -------------------------------------------------------------------------------------


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(r, 4), round(g, 4), round(b, 4))


def _place_rooms(c: ArenaConfig, rng: np.random.Generator) -> list[tuple[int, int, int, int, str]]:
    """Non-overlapping rectangles (x0, z0, x1, z1, kind) with one solid cell between any two."""
    gw, gd = c.grid_width, c.grid_depth
    wanted = [("open", c.open_area_size, c.open_area_size)] * c.open_areas + [("room", c.room_min, c.room_max)] * c.rooms
    placed: list[tuple[int, int, int, int, str]] = []
    for kind, lo, hi in wanted:
        for _ in range(80):
            w = int(rng.integers(lo, hi + 1)) if kind == "room" else lo + int(rng.integers(-1, 2))
            h = int(rng.integers(lo, hi + 1)) if kind == "room" else lo + int(rng.integers(-1, 2))
            w, h = max(2, min(w, gw - 2)), max(2, min(h, gd - 2))
            x0 = int(rng.integers(1, gw - 1 - w + 1))
            z0 = int(rng.integers(1, gd - 1 - h + 1))
            # Require a one-cell solid gap so rooms stay distinct regions joined only by corridors.
            if all(x0 > b[2] or x0 + w < b[0] or z0 > b[3] or z0 + h < b[1] for b in placed):
                placed.append((x0, z0, x0 + w, z0 + h, kind))
                break
    if not placed:  # validation guarantees a room_min room fits in the corner
        lo = c.room_min if c.rooms else c.open_area_size
        placed.append((1, 1, 1 + lo, 1 + lo, "room" if c.rooms else "open"))
    return placed


def _corridor_cells(a: tuple[int, int], b: tuple[int, int], x_first: bool) -> list[tuple[int, int]]:
    """An L-shaped run of cells from a to b (inclusive)."""
    (ax, az), (bx, bz) = a, b
    cells: list[tuple[int, int]] = []
    sx = 1 if bx >= ax else -1
    sz = 1 if bz >= az else -1
    if x_first:
        cells += [(x, az) for x in range(ax, bx + sx, sx)]
        cells += [(bx, z) for z in range(az, bz + sz, sz)]
    else:
        cells += [(ax, z) for z in range(az, bz + sz, sz)]
        cells += [(x, bz) for x in range(ax, bx + sx, sx)]
    return cells


VIVID = [0.0, 0.14, 0.33, 0.5, 0.62, 0.78, 0.9]  # hues of the obelisks and bobbers


def generate_level(config: ArenaConfig, seed: int) -> Level:
    """Build the level for `seed`. Deterministic: the only randomness is a Generator seeded here, drawn from in the
    order of the steps below (rooms, corridors, styles, landmarks, movers, doors, spawn)."""
    b = _LevelBuilder(config, seed)
    b.carve_rooms()
    b.carve_corridors()
    regions = b.styles()
    b.floor_and_walls()
    b.place_landmarks()
    b.place_movers()
    b.place_doors()
    return b.level(regions)


class _LevelBuilder:
    """The state `generate_level` builds a level in, one step per method."""

    def __init__(self, config: ArenaConfig, seed: int) -> None:
        c = self.c = config
        self.seed = int(seed)
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA2E7A])  # namespaced: not shared with policies
        self.gw, self.gd, self.cs, self.wh = c.grid_width, c.grid_depth, c.cell_size, c.wall_height
        self.solid = np.ones((self.gw, self.gd), bool)
        self.region = np.full((self.gw, self.gd), -1, np.int32)
        self.blocked = np.zeros((self.gw, self.gd), bool)
        self.rooms: list[Room] = []
        self.region_kinds: list[str] = []
        self.centers: list[tuple[float, float, float]] = []
        self.halves: list[tuple[float, float, float]] = []
        self.colors: list[tuple[float, float, float]] = []
        self.params: list[tuple[float, float, float, float]] = []
        self.solids: list[bool] = []
        self.landmarks: list[Landmark] = []
        self.pools: list[list[tuple[int, int]]] = []  # free interior cells per room, in a seeded order
        self.room_order: list[int] = []
        self.mv: dict[str, list] = {k: [] for k in ("kind", "base", "axis", "half", "amp", "period", "phase", "spin",
                                                     "color", "params", "solid")}

    # 1. rooms, each its own region
    def carve_rooms(self) -> None:
        for x0, z0, x1, z1, kind in _place_rooms(self.c, self.rng):
            rid = len(self.region_kinds)
            self.region_kinds.append(kind)
            self.rooms.append(Room(x0, z0, x1, z1, rid))
            self.solid[x0:x1, z0:z1] = False
            self.region[x0:x1, z0:z1] = rid

    # 2. corridors: a spanning tree (each room to its nearest earlier room) plus extra loops
    def carve_corridors(self) -> None:
        rooms, rng, solid, region = self.rooms, self.rng, self.solid, self.region
        pairs: list[tuple[int, int]] = []
        centres = np.array([r.centre_cell for r in rooms], float)
        for i in range(1, len(rooms)):
            j = int(np.argmin(np.linalg.norm(centres[:i] - centres[i], axis=1)))
            pairs.append((i, j))
        if len(rooms) > 2:
            for _ in range(self.c.extra_corridors):
                i, j = (int(v) for v in rng.choice(len(rooms), size=2, replace=False))
                pairs.append((i, j))
        for i, j in pairs:
            rid = len(self.region_kinds)
            carved = 0
            for cell in _corridor_cells(rooms[i].centre_cell, rooms[j].centre_cell, bool(rng.integers(2))):
                if solid[cell]:
                    solid[cell] = False
                    region[cell] = rid
                    carved += 1
            if carved:
                self.region_kinds.append("corridor")

    # 3. region styles: hues spread by the golden ratio so neighbours differ; patterns drawn per region
    def styles(self) -> list[Region]:
        rng = self.rng
        hue0 = float(rng.random())
        regions: list[Region] = []
        for rid, kind in enumerate(self.region_kinds):
            h = hue0 + rid * 0.618034
            sat = float(rng.uniform(0.35, 0.8))
            pattern = int(rng.integers(N_PATTERNS))
            floor_pattern = int((pattern + rng.integers(1, N_PATTERNS)) % N_PATTERNS)
            regions.append(Region(
                id=rid, kind=kind, pattern=pattern, floor_pattern=floor_pattern,
                color_a=_hsv(h, sat, float(rng.uniform(0.75, 0.95))),
                color_b=_hsv(h + float(rng.uniform(0.08, 0.5)), sat * 0.8, float(rng.uniform(0.3, 0.55))),
                color_c=_hsv(h + 0.5, 0.9, 0.9),
                scale=float(rng.uniform(0.6, 1.6)) if kind != "corridor" else float(rng.uniform(0.4, 0.9)),
            ))
        return regions

    # 4. static instances: floor, merged wall runs, then landmarks
    def add_static(self, center, half, color, kind, pattern, scale, oid, is_solid) -> None:
        self.centers.append(tuple(float(v) for v in center))
        self.halves.append(tuple(float(v) for v in half))
        self.colors.append(tuple(float(v) for v in color))
        self.params.append((kind, float(pattern), float(scale), float(oid)))
        self.solids.append(is_solid)

    def add_landmark(self, kind, center, half, color, pattern, scale, is_solid=True) -> None:
        oid = STATIC_ID_BASE + len(self.landmarks)
        self.landmarks.append(Landmark(oid, kind, tuple(float(v) for v in center), tuple(float(v) for v in half),
                                       tuple(float(v) for v in color)))
        self.add_static(center, half, color, KIND_OBJECT, pattern, scale, oid, is_solid)

    def take(self, room_index: int) -> tuple[int, int] | None:
        """A free interior cell of the room (from its seeded pool), now blocked; None when the room is full."""
        pool = self.pools[room_index]
        if not pool:
            return None
        cell = pool.pop()
        self.blocked[cell] = True
        return cell

    def floor_and_walls(self) -> None:
        gw, gd, cs, wh, solid = self.gw, self.gd, self.cs, self.wh, self.solid
        self.add_static((gw * cs / 2, -0.05, gd * cs / 2), (gw * cs / 2, 0.05, gd * cs / 2), (0.5, 0.5, 0.5),
                        KIND_REGION, 0, 1.0, FLOOR_ID, False)
        padded = np.pad(~solid, 1)
        near_open = np.zeros_like(solid)
        for dx in (-1, 0, 1):
            for dz in (-1, 0, 1):
                near_open |= padded[1 + dx:1 + dx + gw, 1 + dz:1 + dz + gd]
        wall = solid & near_open  # rock that no one can see is not drawn
        for iz in range(gd):
            ix = 0
            while ix < gw:
                if not wall[ix, iz]:
                    ix += 1
                    continue
                start = ix
                while ix < gw and wall[ix, iz]:
                    ix += 1
                self.add_static(((start + ix) * cs / 2, wh / 2, (iz + 0.5) * cs), ((ix - start) * cs / 2, wh / 2, cs / 2),
                                (0.5, 0.5, 0.5), KIND_REGION, 0, 1.0, WALL_ID, True)

    def place_landmarks(self) -> None:
        c, rng, rooms, cs, wh = self.c, self.rng, self.rooms, self.cs, self.wh
        for room in rooms:
            cells = room.interior()
            order = rng.permutation(len(cells)) if cells else []
            self.pools.append([cells[k] for k in order])
        self.room_order = [int(i) for i in rng.permutation(len(rooms))]
        for ri, room in enumerate(rooms):
            for _ in range(c.pillars_per_room):
                cell = self.take(ri)
                if cell is None:
                    break
                p = rng.uniform(0.25, 0.35)
                self.add_landmark("pillar", ((cell[0] + 0.5) * cs, wh / 2, (cell[1] + 0.5) * cs), (p, wh / 2, p),
                                  _hsv(float(rng.random()), 0.15, 0.8), int(rng.integers(N_PATTERNS)), 0.5)
            for _ in range(c.crates_per_room):
                cell = self.take(ri)
                if cell is None:
                    break
                s = float(rng.uniform(0.3, 0.45))
                self.add_landmark("crate", ((cell[0] + 0.5) * cs, s, (cell[1] + 0.5) * cs), (s, s, s),
                                  _hsv(0.08 + 0.05 * float(rng.random()), 0.6, 0.65), 7, 0.35)
        for k in range(c.obelisks):
            ri = self.room_order[k % len(rooms)]
            cell = self.take(ri)
            if cell is None:
                continue
            height = float(rng.uniform(4.0, 6.5))  # taller than the walls: visible from other rooms
            self.add_landmark("obelisk", ((cell[0] + 0.5) * cs, height / 2, (cell[1] + 0.5) * cs),
                              (0.3, height / 2, 0.3),
                              _hsv(VIVID[int(rng.integers(len(VIVID)))] + 0.03 * float(rng.random()), 0.95, 0.95), 0, 0.5)
        open_first = sorted(range(len(rooms)), key=lambda i: (self.region_kinds[rooms[i].region] != "open",
                                                              self.room_order.index(i)))
        for k in range(c.arches):
            ri = open_first[k % len(rooms)]
            cell = self.take(ri)
            if cell is None:
                continue
            # Two posts on opposite edges of the cell and a lintel over head height; the posts block the
            # cell for planners (crossing it sideways would hit a post).
            cx, cz = (cell[0] + 0.5) * cs, (cell[1] + 0.5) * cs
            along_x = bool(rng.integers(2))
            off = cs / 2 - 0.2
            color = _hsv(float(rng.random()), 0.25, 0.95)
            for sgn in (-1, 1):
                pc = (cx + sgn * off, 1.3, cz) if along_x else (cx, 1.3, cz + sgn * off)
                self.add_landmark("arch_post", pc, (0.15, 1.3, 0.15), color, 3, 0.4)
            lintel_half = (off + 0.15, 0.2, 0.15) if along_x else (0.15, 0.2, off + 0.15)
            self.add_landmark("arch_lintel", (cx, 2.8, cz), lintel_half, color, 3, 0.4)

    # 5. movers
    def add_mover(self, kind, base, axis, half, amp, period_s, phase, spin, color, pattern, scale, is_solid) -> None:
        oid = DYNAMIC_ID_BASE + len(self.mv["kind"])
        for key, val in (("kind", kind), ("base", base), ("axis", axis), ("half", half), ("amp", amp),
                         ("period", period_s), ("phase", phase), ("spin", spin), ("color", color),
                         ("params", (KIND_OBJECT, pattern, scale, oid)), ("solid", is_solid)):
            self.mv[key].append(val)

    def place_movers(self) -> None:
        c, rng, rooms, cs = self.c, self.rng, self.rooms, self.cs
        for k in range(c.bobbers):
            ri = self.room_order[(k + c.obelisks) % len(rooms)]
            cell = self.take(ri)
            if cell is None:
                continue
            cx, cz = (cell[0] + 0.5) * cs, (cell[1] + 0.5) * cs
            self.add_landmark("pedestal", (cx, 0.4, cz), (0.4, 0.4, 0.4), (0.55, 0.55, 0.58), 7, 0.25)
            size = float(rng.uniform(0.25, 0.4))
            self.add_mover(MOVER_BOBBER, (cx, 1.6, cz), (0, 0, 0), (size, size, size), float(rng.uniform(0.25, 0.5)),
                           float(rng.uniform(2.0, 4.0)), float(rng.random()),
                           float(rng.choice([-1, 1]) * rng.uniform(1.0, 3.0)),
                           _hsv(VIVID[int(rng.integers(len(VIVID)))], 0.85, 1.0), int(rng.integers(N_PATTERNS)), 0.25,
                           False)
        for k in range(c.patrollers):
            # A lane is a straight run of >= 2 free interior cells in one row of a room.
            placed = False
            for ri in self.room_order[k:] + self.room_order[:k]:
                free = set(self.pools[ri])
                rows = sorted({z for _, z in free})
                for z in rows:
                    xs = sorted(x for x, zz in free if zz == z)
                    run: list[int] = []
                    for x in xs:
                        run = run + [x] if run and x == run[-1] + 1 else [x]
                        if len(run) >= 3:
                            break
                    if len(run) >= 2:
                        for x in run:
                            self.pools[ri].remove((x, z))
                            self.blocked[x, z] = True
                        a = np.array([(run[0] + 0.5) * cs, 0.6, (z + 0.5) * cs])
                        b = np.array([(run[-1] + 0.5) * cs, 0.6, (z + 0.5) * cs])
                        self.add_mover(MOVER_PATROLLER, tuple(a), tuple(b - a), (0.4, 0.6, 0.4), 0.0,
                                       c.patrol_period_s * float(rng.uniform(0.8, 1.2)), float(rng.random()), 0.0,
                                       (1.0, 0.55, 0.05), 1, 0.3, True)
                        placed = True
                        break
                if placed:
                    break

    # Doors: straight corridor cells with rock on both sides to slide into.
    def place_doors(self) -> None:
        c, rng, solid, blocked, cs, wh = self.c, self.rng, self.solid, self.blocked, self.cs, self.wh
        candidates = []
        for ix in range(1, self.gw - 1):
            for iz in range(1, self.gd - 1):
                if solid[ix, iz] or blocked[ix, iz] or self.region_kinds[self.region[ix, iz]] != "corridor":
                    continue
                if solid[ix - 1, iz] and solid[ix + 1, iz] and not solid[ix, iz - 1] and not solid[ix, iz + 1]:
                    candidates.append((ix, iz, 0))  # passage runs along z; the door spans x
                elif solid[ix, iz - 1] and solid[ix, iz + 1] and not solid[ix - 1, iz] and not solid[ix + 1, iz]:
                    candidates.append((ix, iz, 1))  # passage runs along x; the door spans z
        order = rng.permutation(len(candidates)) if candidates else []
        used: list[tuple[int, int]] = []
        for idx in order:
            if len(used) >= c.doors:
                break
            ix, iz, axis = candidates[int(idx)]
            if any(abs(ix - ux) + abs(iz - uz) < 3 for ux, uz in used):
                continue  # keep doors apart so two never share a wall cell
            used.append((ix, iz))
            blocked[ix, iz] = True
            door_h = wh * 0.85
            sgn = float(rng.choice([-1, 1]))
            slide = cs + 0.05  # fully inside the neighbouring rock when open (no coplanar faces)
            if axis == 0:
                half, vec = (cs / 2, door_h / 2, 0.1), (sgn * slide, 0.0, 0.0)
            else:
                half, vec = (0.1, door_h / 2, cs / 2), (0.0, 0.0, sgn * slide)
            self.add_mover(MOVER_DOOR, ((ix + 0.5) * cs, door_h / 2, (iz + 0.5) * cs), vec, half, 0.0,
                           c.door_period_s, float(rng.random()), 0.0, (0.35, 0.38, 0.42), 5, 0.35, True)

    # 6. spawn: the free cell of the first room nearest its centre, facing a seeded direction; then the sun
    def level(self, regions: list[Region]) -> Level:
        rng, cs = self.rng, self.cs
        first = self.rooms[0]
        cells = [(x, z) for x in range(first.x0, first.x1) for z in range(first.z0, first.z1) if not self.blocked[x, z]]
        ccx, ccz = (first.x0 + first.x1 - 1) / 2, (first.z0 + first.z1 - 1) / 2
        sx, sz = min(cells, key=lambda p: ((p[0] - ccx) ** 2 + (p[1] - ccz) ** 2, p))
        spawn = np.array([(sx + 0.5) * cs, 0.0, (sz + 0.5) * cs])
        spawn_yaw = float(rng.uniform(-180.0, 180.0))
        az, el = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(np.radians(35), np.radians(65)))
        sun = np.array([np.cos(el) * np.cos(az), np.sin(el), np.cos(el) * np.sin(az)])

        def arr(key: str, dtype, width: int | None = None) -> np.ndarray:
            a = np.array(self.mv[key], dtype)
            return a.reshape(-1, width) if width else a.reshape(-1)

        return Level(
            config=self.c, seed=self.seed, solid=self.solid, region=self.region, blocked=self.blocked,
            regions=regions, rooms=self.rooms, landmarks=self.landmarks,
            static_center=np.array(self.centers, np.float64), static_half=np.array(self.halves, np.float64),
            static_yaw=np.zeros(len(self.centers)), static_color=np.array(self.colors, np.float64),
            static_params=np.array(self.params, np.float64), static_solid=np.array(self.solids, bool),
            mv_kind=arr("kind", np.int32), mv_base=arr("base", np.float64, 3), mv_axis=arr("axis", np.float64, 3),
            mv_half=arr("half", np.float64, 3), mv_amp=arr("amp", np.float64), mv_period=arr("period", np.float64),
            mv_phase=arr("phase", np.float64), mv_spin=arr("spin", np.float64), mv_color=arr("color", np.float64, 3),
            mv_params=arr("params", np.float64, 4), mv_solid=arr("solid", bool),
            spawn_position=spawn, spawn_yaw=spawn_yaw, sun_dir=sun,
        )
