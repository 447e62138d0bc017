"""Offscreen moderngl renderer for the arena: RGB, linear depth and an object-id image per frame.

One standalone EGL context per renderer (no display needed). Every GL call sits inside
`with borrowed(self.ctx):` (= `with self.ctx:` plus restoring the caller's current context afterwards,
see engine/glcontext.py) because another context (the game window) may be current in the same thread.

Per level, all static boxes (floor, merged walls, landmarks) go into ONE instance buffer and the movers
into a second small one that is rewritten each frame; each frame is a sky pass plus two instanced draws
of a unit cube. Textures are procedural in the fragment shader: surfaces of kind "region" look up the
region of the cell they face (a [GW, GD] texture) and that region's pattern and palette (a table
texture), so each room and corridor is recognisable on a revisit.

Framebuffer:
    attachment 0  RGBA8    colour (alpha unused)
    attachment 1  RG32F    (linear depth along the camera's z in metres, object id)
    depth buffer  for the depth test only
Sky pixels get depth = far plane (`ArenaConfig.far`) and id 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import moderngl
import numpy as np

from engine.arena.config import MAX_REGIONS
from engine.glcontext import borrowed, preserving_current
from engine.recording import note_gl
from engine.arena.level import DYNAMIC_ID_BASE, Level

_VERT = """
#version 330
in vec3 in_pos;      // unit cube corner in [-1, 1]^3
in vec3 in_normal;
in vec3 i_center;
in vec3 i_half;
in float i_yaw;      // radians, rotation about +y
in vec3 i_color;
in vec4 i_params;    // kind, pattern, scale, id
uniform mat4 u_view; // world -> GL eye (x right, y up, z back)
uniform mat4 u_proj;
out vec3 v_world;
out vec3 v_local;
out vec3 v_normal;
out vec3 v_lnormal;
out float v_depth;
flat out vec3 v_color;
flat out vec4 v_params;
void main() {
    vec3 local = in_pos * i_half;
    float c = cos(i_yaw), s = sin(i_yaw);
    // Rotation by yaw about +y, same convention as the player's (x toward -z is a right turn).
    mat3 rot = mat3(c, 0.0, s,  0.0, 1.0, 0.0,  -s, 0.0, c);
    vec3 world = i_center + rot * local;
    vec4 eye = u_view * vec4(world, 1.0);
    v_world = world;
    v_local = local;
    v_normal = rot * in_normal;
    v_lnormal = in_normal;
    v_depth = -eye.z;  // metres along the camera's forward axis
    v_color = i_color;
    v_params = i_params;
    gl_Position = u_proj * eye;
}
"""

_PATTERNS = """
// 0..1 mix weight between a palette's two colours for pattern p at pattern coordinates uv.
float pattern(int p, vec2 uv) {
    if (p == 0) return step(0.5, fract(uv.y));                              // horizontal stripes
    if (p == 1) return step(0.5, fract(uv.x));                              // vertical stripes
    if (p == 2) return mod(floor(uv.x) + floor(uv.y), 2.0);                 // checkers
    if (p == 3) {                                                           // bricks
        float row = floor(uv.y * 2.0);
        vec2 f = fract(vec2(uv.x + 0.5 * mod(row, 2.0), uv.y * 2.0));
        return (f.x < 0.07 || f.y < 0.12) ? 0.0 : 1.0;
    }
    if (p == 4) return step(length(fract(uv) - 0.5), 0.3);                  // dots
    if (p == 5) return step(0.5, fract((uv.x + uv.y) * 0.7071));            // diagonal stripes
    if (p == 6) return fract(uv.y * 0.3 + 0.15 * floor(uv.x));              // stepped gradient
    if (p == 7) { vec2 f = fract(uv); return (f.x < 0.1 || f.y < 0.1) ? 0.0 : 1.0; }  // tiles
    if (p == 8) return step(0.5, 0.5 + 0.5 * sin(6.2832 * uv.x + 2.5 * sin(3.1416 * uv.y)));  // waves
    if (p == 9) { vec2 f = abs(fract(uv) - 0.5); return step(f.x + f.y, 0.32); }  // diamonds
    return 1.0;
}
"""

_FRAG = """
#version 330
in vec3 v_world;
in vec3 v_local;
in vec3 v_normal;
in vec3 v_lnormal;
in float v_depth;
flat in vec3 v_color;
flat in vec4 v_params;
uniform sampler2D u_region_map;    // [GD, GW] region id per cell (R32F), -1 = rock
uniform sampler2D u_region_table;  // [3, MAX_REGIONS] RGBA32F palette rows
uniform float u_cell;
uniform float u_wall_height;
uniform vec3 u_sun;
uniform vec3 u_fog_color;
uniform float u_fog;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec2 f_aux;
PATTERNS
vec2 planar_uv(vec3 p, vec3 n) {
    vec3 a = abs(n);
    if (a.y > 0.5) return p.xz;
    if (a.x > 0.5) return vec2(p.z, p.y);
    return vec2(p.x, p.y);
}
void main() {
    vec3 n = normalize(v_normal);
    int kind = int(v_params.x + 0.5);
    vec3 albedo;
    if (kind == 0) {
        // Region surface: the cell just in front of the face decides the pattern, so a wall shows the
        // texture of the room it faces and the floor that of the room it belongs to.
        vec3 probe = v_world + n * 0.05;
        ivec2 cell = ivec2(floor(probe.xz / u_cell));
        ivec2 msize = textureSize(u_region_map, 0);
        cell = clamp(cell, ivec2(0), msize - 1);
        int rid = int(texelFetch(u_region_map, ivec2(cell.x, cell.y), 0).r + 0.5);
        if (rid < 0 || v_world.y > u_wall_height - 0.01) {
            albedo = vec3(0.42, 0.42, 0.45);  // wall tops and rock
        } else {
            vec4 a = texelFetch(u_region_table, ivec2(rid, 0), 0);
            vec4 b = texelFetch(u_region_table, ivec2(rid, 1), 0);
            vec4 c = texelFetch(u_region_table, ivec2(rid, 2), 0);
            vec2 uv = planar_uv(v_world, n) / b.w;
            if (n.y > 0.5) {
                // Floors: the region's second pattern, darker, so floor and walls read differently.
                albedo = mix(b.rgb, a.rgb, pattern(int(c.w + 0.5), uv)) * 0.7;
            } else {
                albedo = mix(b.rgb, a.rgb, pattern(int(a.w + 0.5), uv));
                if (v_world.y > u_wall_height - 0.35) albedo = c.rgb;  // coloured trim band
                albedo *= 0.55 + 0.45 * smoothstep(0.0, 0.7, v_world.y);  // fake contact shadow
            }
        }
    } else {
        // Objects: own colour and pattern in object-local coordinates (the pattern moves with them).
        vec2 uv = planar_uv(v_local, v_lnormal) / max(v_params.z, 1e-3);
        albedo = mix(v_color * 0.45, v_color, pattern(int(v_params.y + 0.5), uv));
    }
    float diffuse = max(dot(n, u_sun), 0.0);
    float ambient = 0.38 + 0.12 * n.y;  // a little brighter from the sky above
    vec3 color = albedo * (ambient + 0.75 * diffuse);
    float fog = 1.0 - exp(-u_fog * v_depth);
    color = mix(color, u_fog_color, fog);
    f_color = vec4(color, 1.0);
    f_aux = vec2(v_depth, v_params.w);
}
""".replace("PATTERNS", _PATTERNS)

_SKY_VERT = """
#version 330
in vec2 in_ndc;
out vec2 v_ndc;
// At the far plane (depth 1.0): drawn last with depth test <=, it shades only pixels no box covered.
void main() { v_ndc = in_ndc; gl_Position = vec4(in_ndc, 1.0, 1.0); }
"""

_SKY_FRAG = """
#version 330
in vec2 v_ndc;
uniform mat3 u_cam_rot;     // columns: right, up, back (GL eye axes) in world coordinates
uniform vec2 u_tan_half;    // tan of half the horizontal and vertical field of view
uniform vec3 u_sun;
uniform float u_far;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec2 f_aux;
void main() {
    vec3 d = normalize(u_cam_rot * vec3(v_ndc * u_tan_half, -1.0));
    float h = clamp(d.y, -1.0, 1.0);
    vec3 zenith = vec3(0.18, 0.36, 0.78);
    vec3 horizon = vec3(0.72, 0.82, 0.92);
    vec3 color = mix(horizon, zenith, pow(max(h, 0.0), 0.6));
    if (h < 0.0) color = mix(horizon, vec3(0.45, 0.47, 0.5), min(-h * 4.0, 1.0));
    // Soft cloud bands fixed to the sky: they make pure rotations visible against it.
    vec2 sp = d.xz / max(d.y, 0.08);
    float cloud = smoothstep(0.55, 0.9, 0.5 + 0.25 * sin(sp.x * 1.3 + sin(sp.y * 0.7) * 2.0)
                                           + 0.25 * sin(sp.y * 1.1 + sp.x * 0.4));
    color = mix(color, vec3(0.97), cloud * smoothstep(0.02, 0.25, h) * 0.8);
    float s = max(dot(d, u_sun), 0.0);
    color += vec3(1.0, 0.9, 0.6) * (pow(s, 400.0) * 1.5 + pow(s, 12.0) * 0.25);
    f_color = vec4(min(color, 1.0), 1.0);
    f_aux = vec2(u_far, 0.0);
}
"""


def _unit_cube() -> np.ndarray:
    """36 vertices of a [-1, 1]^3 cube with outward normals, counter-clockwise: float32 [36, 6]."""
    verts = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = np.zeros(3)
            n[axis] = sign
            u = np.zeros(3)
            v = np.zeros(3)
            u[(axis + 1) % 3] = 1.0
            v[(axis + 2) % 3] = 1.0
            if sign < 0:
                u, v = v, u  # keep the winding counter-clockwise seen from outside
            corners = [n - u - v, n + u - v, n + u + v, n - u + v]
            for idx in (0, 1, 2, 0, 2, 3):
                verts.append(np.concatenate([corners[idx], n]))
    return np.array(verts, np.float32)


def _instances(center: np.ndarray, half: np.ndarray, yaw: np.ndarray, color: np.ndarray,
               params: np.ndarray) -> np.ndarray:
    """Pack per-instance attributes into float32 [N, 14] (center 3, half 3, yaw 1, color 3, params 4)."""
    return np.concatenate([center, half, yaw[:, None], color, params], axis=1).astype(np.float32)


_INSTANCE_FORMAT = "3f 3f 1f 3f 4f/i"
_INSTANCE_ATTRS = ("i_center", "i_half", "i_yaw", "i_color", "i_params")


@dataclass
class Frame:
    """One rendered frame: rgb [H, W, 3] uint8, depth [H, W] float32 metres, ids [H, W] int32."""

    rgb: np.ndarray
    depth: np.ndarray
    ids: np.ndarray

    @property
    def dynamic_mask(self) -> np.ndarray:
        """[H, W] bool: pixels where a mover is drawn."""
        return self.ids >= DYNAMIC_ID_BASE


def perspective(fov_y_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """OpenGL projection [4, 4] float64 (eye looks down -z, clip z in [-w, w])."""
    f = 1.0 / np.tan(np.radians(fov_y_deg) / 2)
    m = np.zeros((4, 4))
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


# OpenCV camera (y down, z forward) -> GL eye (y up, z backward)
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


class ArenaRenderer:
    """Owns a headless GL context and draws a `Level` from a camera pose.

    width, height: output size in pixels; fov_y_deg: vertical field of view; near/far: clip planes (m).
    """

    def __init__(self, width: int, height: int, fov_y_deg: float, near: float, far: float) -> None:
        self.width, self.height = width, height
        self.fov_y_deg, self.near, self.far = fov_y_deg, near, far
        with preserving_current():  # creating a context makes it current; give the caller's back
            self.ctx = moderngl.create_standalone_context(backend="egl")
        self._level: Level | None = None
        self._closed = False
        with borrowed(self.ctx):
            self.max_size = int(self.ctx.info["GL_MAX_RENDERBUFFER_SIZE"])
            note_gl("arena", self.ctx)  # recordings made in this process name the renderer and its Mesa version
        if width > self.max_size or height > self.max_size:
            self.close()
            raise ValueError(f"resolution {width}x{height} exceeds this GL's maximum renderbuffer size "
                             f"{self.max_size}; ask for a smaller image")
        with borrowed(self.ctx):
            self.prog = self.ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
            self.sky_prog = self.ctx.program(vertex_shader=_SKY_VERT, fragment_shader=_SKY_FRAG)
            self.cube = self.ctx.buffer(_unit_cube().tobytes())
            tri = np.array([[-1, -1], [3, -1], [-1, 3]], np.float32)  # one triangle covers the screen
            self.sky_vao = self.ctx.vertex_array(self.sky_prog, [(self.ctx.buffer(tri.tobytes()), "2f", "in_ndc")])
            self.color_rb = self.ctx.renderbuffer((width, height), components=4)
            self.aux_rb = self.ctx.renderbuffer((width, height), components=2, dtype="f4")
            self.depth_rb = self.ctx.depth_renderbuffer((width, height))
            self.fbo = self.ctx.framebuffer(color_attachments=[self.color_rb, self.aux_rb],
                                            depth_attachment=self.depth_rb)
            self.proj = perspective(fov_y_deg, width / height, near, far)
            self.prog["u_proj"].write(self.proj.T.astype("f4").tobytes())  # GL wants column-major
            self.prog["u_region_map"].value = 0
            self.prog["u_region_table"].value = 1
            tan_y = np.tan(np.radians(fov_y_deg) / 2)
            self.sky_prog["u_tan_half"].value = (float(tan_y * width / height), float(tan_y))
            self.sky_prog["u_far"].value = float(far)
        self._static_vao = self._dynamic_vao = None
        self._gl_objects: list = []

    # -- per level ----------------------------------------------------------------------------------

    def set_level(self, level: Level) -> None:
        """Upload a level's static geometry, region textures and lighting (once per reset)."""
        with borrowed(self.ctx):
            for obj in self._gl_objects:
                obj.release()
            self._gl_objects = []
            static = _instances(level.static_center, level.static_half, level.static_yaw,
                                level.static_color, level.static_params)
            self.static_count = len(static)
            static_buf = self.ctx.buffer(static.tobytes())
            self.mover_count = len(level.mv_kind)
            # At least one instance of room so the buffer is never empty (a level may have no movers).
            self.dynamic_buf = self.ctx.buffer(reserve=max(self.mover_count, 1) * 14 * 4, dynamic=True)
            self._static_vao = self.ctx.vertex_array(
                self.prog, [(self.cube, "3f 3f", "in_pos", "in_normal"),
                            (static_buf, _INSTANCE_FORMAT, *_INSTANCE_ATTRS)])
            self._dynamic_vao = self.ctx.vertex_array(
                self.prog, [(self.cube, "3f 3f", "in_pos", "in_normal"),
                            (self.dynamic_buf, _INSTANCE_FORMAT, *_INSTANCE_ATTRS)])
            # Region map: texel (x=ix, y=iz) holds the region of cell (ix, iz).
            rmap = np.ascontiguousarray(level.region.T.astype("f4"))
            self.region_map = self.ctx.texture((rmap.shape[1], rmap.shape[0]), 1, rmap.tobytes(), dtype="f4")
            table = np.ascontiguousarray(level.region_table().transpose(1, 0, 2))  # [3, MAX_REGIONS, 4]
            self.region_table = self.ctx.texture((MAX_REGIONS, 3), 4, table.tobytes(), dtype="f4")
            for tex in (self.region_map, self.region_table):
                tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
            self._gl_objects = [static_buf, self.dynamic_buf, self._static_vao, self._dynamic_vao,
                                self.region_map, self.region_table]
            sun = tuple(float(v) for v in level.sun_dir)
            self.prog["u_cell"].value = float(level.config.cell_size)
            self.prog["u_wall_height"].value = float(level.config.wall_height)
            self.prog["u_sun"].value = sun
            self.prog["u_fog"].value = float(level.config.fog_density)
            self.prog["u_fog_color"].value = (0.72, 0.82, 0.92)  # the sky's horizon colour
            self.sky_prog["u_sun"].value = sun
        self._level = level

    # -- per frame ----------------------------------------------------------------------------------

    def render(self, cam_to_world: np.ndarray, t: float) -> Frame:
        """Draw the level from an OpenCV camera-to-world pose [4, 4] with movers at time t (s)."""
        level = self._level
        if level is None:
            raise RuntimeError("ArenaRenderer.render called before set_level")
        if self._closed:
            raise RuntimeError("ArenaRenderer is closed")
        view = CV_TO_GL @ np.linalg.inv(cam_to_world)  # world -> GL eye
        with borrowed(self.ctx):
            if self.mover_count:
                centers, yaw = level.mover_poses(t)
                data = _instances(centers, level.mv_half, yaw, level.mv_color, level.mv_params)
                self.dynamic_buf.write(data.tobytes())
            self.prog["u_view"].write(view.T.astype("f4").tobytes())
            # Rotation columns are the GL eye axes in world coordinates: right, up, back.
            self.sky_prog["u_cam_rot"].write((cam_to_world[:3, :3] @ CV_TO_GL[:3, :3]).T.astype("f4").tobytes())
            self.fbo.use()
            self.fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
            self.ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
            self.ctx.depth_func = "<"
            self.region_map.use(0)
            self.region_table.use(1)
            self._static_vao.render(moderngl.TRIANGLES, instances=self.static_count)
            if self.mover_count:
                self._dynamic_vao.render(moderngl.TRIANGLES, instances=self.mover_count)
            # Sky last, only where the depth buffer is still clear: its shader runs on sky pixels only.
            self.ctx.depth_func = "<="
            self.ctx.depth_mask = False
            self.ctx.disable(moderngl.CULL_FACE)
            self.sky_vao.render(moderngl.TRIANGLES)
            self.ctx.depth_mask = True
            rgb = self.fbo.read(components=3, attachment=0, alignment=1)
            aux = self.fbo.read(components=2, attachment=1, dtype="f4", alignment=1)
        h, w = self.height, self.width
        # GL rows come bottom-up: flip to image order (row 0 = top).
        rgb_img = np.frombuffer(rgb, np.uint8).reshape(h, w, 3)[::-1].copy()
        aux_img = np.frombuffer(aux, np.float32).reshape(h, w, 2)[::-1]
        depth = np.ascontiguousarray(aux_img[..., 0])
        ids = np.rint(aux_img[..., 1]).astype(np.int32)
        return Frame(rgb_img, depth, ids)

    def close(self) -> None:
        """Release the GL context. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        with preserving_current():
            self.ctx.release()
