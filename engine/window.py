"""The desktop window: pygame for the window and input, moderngl to draw frames and the HUD.

The world's frame is uploaded as a texture and drawn on a quad inside an aspect-preserving
(letterboxed) viewport; the HUD and the help overlay are text rendered by pygame into RGBA textures
and alpha-blended on top. The mouse is captured for look (SDL's relative mode: hidden cursor + grab);
Esc releases it and a second Esc quits.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from engine.files import save_png
from engine.game import Hud
from engine.input import InputAccumulator, Keymap
from engine.warp import FAR_M, NEAR_M, clean_depth, grid, mesh_stride
from engine.world import Observation

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # no sound; silences ALSA complaints on servers
os.environ.setdefault("SDL_VIDEO_X11_WMCLASS", "dreamwalk")  # window managers and xdotool find us by class

import pygame  # noqa: E402

_VERTEX = """
#version 330
in vec2 in_pos;
uniform float depth;  // the quad's NDC z: 1 (the far plane) to fill only what a depth-tested mesh left empty
uniform float rendered;  // 1: the texture was rendered by GL (bottom row first), 0: uploaded (top row first)
out vec2 uv;
void main() {
    // Uploaded textures hold the top row first, so v runs downwards on screen; rendered ones the other way.
    uv = vec2(in_pos.x * 0.5 + 0.5, 0.5 + mix(-0.5, 0.5, rendered) * in_pos.y);
    gl_Position = vec4(in_pos, depth, 1.0);
}
"""
_FRAGMENT = """
#version 330
uniform sampler2D tex;
in vec2 uv;
out vec4 color;
void main() { color = texture(tex, uv); }
"""


# Frames between ticks (engine/warp.py): the frame's pixels as a mesh at their depth, seen from the view camera.
_WARP_VERTEX = """
#version 330
uniform sampler2D depth_tex;
uniform mat4 rel;      // the frame's camera coordinates -> the view camera's
uniform vec4 intr;     // fx, fy, cx, cy of the frame, pixels
uniform vec2 size;     // the frame's width, height
uniform vec2 clip;     // near, far (m)
in vec2 in_px;         // a pixel centre, maybe past the frame's edge (the stretched border)
out vec2 uv;
void main() {
    uv = in_px / size;  // past the edge the textures clamp to it (the stretched border)
    float d = texture(depth_tex, uv).r;
    vec4 q = rel * vec4((in_px.x - intr.z) / intr.x * d, (in_px.y - intr.w) / intr.y * d, d, 1.0);
    float n = clip.x, f = clip.y;
    // the same intrinsics in the view, image y down -> clip space with w = depth (perspective-correct clipping)
    gl_Position = vec4(2.0 * intr.x / size.x * q.x + (2.0 * intr.z / size.x - 1.0) * q.z,
                       -(2.0 * intr.y / size.y * q.y + (2.0 * intr.w / size.y - 1.0) * q.z),
                       q.z * (f + n) / (f - n) - 2.0 * f * n / (f - n), q.z);
}
"""
_WARP_FRAGMENT = """
#version 330
uniform sampler2D tex;
in vec2 uv;
out vec4 color;
void main() { color = texture(tex, uv); }
"""

HUD_MARGIN = 8  # px between the window's edge and the HUD box
HUD_PAD = 6  # px inside the box
HUD_DOT = 18  # px kept for the recording dot
MESSAGE_LINES = 3  # a message longer than this many lines is cut with "..."
# What the HUD's figures mean, under the bindings in the help overlay.
HUD_LEGEND = [("HUD: dropped", "ticks skipped: the world ran slower than the tick rate"),
              ("HUD: latency", "input to the frame that shows it on screen (look: with frames between ticks, F4)")]


def overlay_rect(size: tuple[int, int], window: tuple[int, int], margin: int = 8) -> tuple[int, int, int, int]:
    """(x, y_top, width, height) of a centred overlay of `size` in `window`: as it is when it fits inside the margins,
    else scaled down (aspect kept) until it does, so the help and the loading text are never cut at the edges."""
    (tw, th), (w, h) = size, window
    scale = min(1.0, max(1, w - 2 * margin) / tw, max(1, h - 2 * margin) / th)
    sw, sh = max(1, round(tw * scale)), max(1, round(th * scale))
    return (w - sw) // 2, (h - sh) // 2, sw, sh


def wrap_text(text: str, width: int, measure: Callable[[str], int], max_lines: int = MESSAGE_LINES) -> list[str]:
    """`text` as lines no wider than `width` (as `measure` counts): broken at spaces, inside a word only when the
    word alone is too wide (a long path); more than `max_lines` lines are cut, the last one ending in "..."."""
    width = max(width, measure("W...") + 1)

    def fits(prefix_len: int, word: str) -> bool:
        return measure(word[:prefix_len]) <= width

    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if measure(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        while measure(word) > width:  # one word wider than the line: break it where it must
            lo, hi = 1, len(word)
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if fits(mid, word) else (lo, mid - 1)
            lines.append(word[:lo])
            word = word[lo:]
        current = word
    if current or not lines:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and measure(last + "...") > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def hud_lines(hud: Hud, captured: bool, width: int, measure: Callable[[str], int]) -> list[tuple[str, tuple]]:
    """The HUD's lines and colours, each no wider than `width` px: figures, the world's text, recording, the latest
    message, and what Esc does next."""
    s = hud.stats

    def fmt(x: float, spec: str) -> str:
        return "-" if x != x else format(x, spec)

    episode = "" if hud.seed is None else f"  seed {hud.seed}"
    tick = s.ticks if hud.episode_tick is None else hud.episode_tick
    lines: list[tuple[str, tuple]] = [
        (f"{hud.world}{'  PAUSED' if hud.paused else ''}", (255, 255, 255)),
        (f"{fmt(s.fps, '.0f')} fps  {fmt(s.ticks_per_s, '.1f')} ticks/s  step {fmt(s.step_ms, '.1f')} ms", (220, 220, 220)),
        (f"latency {fmt(s.latency_ms, '.0f')} ms"
         + (f" (look {fmt(s.look_latency_ms, '.0f')})" if s.look_latency_ms == s.look_latency_ms else "")
         + f"{episode}  tick {tick}", (220, 220, 220)),
    ]
    if s.dropped_recent:  # the last few seconds only: a start-up hitch clears
        lines.append((f"dropped {s.dropped_recent} in 5 s: the world runs slower than {hud.tick_rate:g} ticks/s",
                      (240, 180, 120)))
    wrapped = [(hud.world_text, (180, 230, 255))] if hud.world_text else []
    if hud.recording:
        wrapped.append(("REC  (F5 stops)", (255, 90, 90)))
    if hud.message:
        wrapped.append((hud.message, (255, 230, 140)))
    wrapped.append(("F1 help" + ("" if captured else "  |  click: capture the mouse  |  Esc again: quit"),
                    (170, 170, 170)))
    out = []
    for text, color in lines + wrapped:
        out += [(line, color) for line in wrap_text(text, width, measure)]
    return out


class WarpMesh:
    """Draws a frame with depth from another camera (engine/warp.py): its pixels' mesh, with a border ring of the
    edge's colour and depth, depth-tested. `draw` takes the frame's texture (bound by the caller's filter)."""

    def __init__(self, ctx) -> None:
        self.ctx = ctx
        self.prog = ctx.program(vertex_shader=_WARP_VERTEX, fragment_shader=_WARP_FRAGMENT)
        self.prog["tex"].value = 0
        self.prog["depth_tex"].value = 1
        self.size: tuple[int, int] | None = None
        self.vao = self.vbo = self.ibo = self.depth_tex = None

    def _build(self, width: int, height: int) -> None:
        for obj in (self.vao, self.vbo, self.ibo, self.depth_tex):
            if obj is not None:
                obj.release()
        verts, tris = grid(width, height, mesh_stride(width, height))
        self.vbo = self.ctx.buffer(verts.tobytes())
        self.ibo = self.ctx.buffer(tris.tobytes())
        self.vao = self.ctx.vertex_array(self.prog, [(self.vbo, "2f", "in_px")], index_buffer=self.ibo,
                                         index_element_size=4)
        import moderngl

        self.depth_tex = self.ctx.texture((width, height), 1, dtype="f4")
        self.depth_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.depth_tex.repeat_x = self.depth_tex.repeat_y = False
        self.size = (width, height)

    def draw(self, frame_tex, depth: np.ndarray, K: np.ndarray, rel: np.ndarray) -> None:
        import moderngl

        h, w = depth.shape
        if self.size != (w, h):
            self._build(w, h)
        self.depth_tex.write(clean_depth(depth).tobytes())  # 16-64 KB a frame: cheaper than knowing it is new
        self.prog["rel"].write(np.ascontiguousarray(rel, np.float32).T.tobytes())  # GLSL matrices are column-major
        self.prog["intr"].value = (float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]))
        self.prog["size"].value = (float(w), float(h))
        self.prog["clip"].value = (NEAR_M, 2.0 * FAR_M)
        frame_tex.use(0)
        self.depth_tex.use(1)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.vao.render(moderngl.TRIANGLES)
        self.ctx.disable(moderngl.DEPTH_TEST)


class DisplayError(RuntimeError):
    """No display to open a window on (or it refused an OpenGL context)."""


def display_available() -> tuple[bool, str]:
    """Whether a window can plausibly open here, and why not."""
    driver = os.environ.get("SDL_VIDEODRIVER", "")
    if driver in ("dummy",):
        return False, "SDL_VIDEODRIVER=dummy has no OpenGL windows"
    if driver == "offscreen":
        return True, ""
    if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        import sys

        if sys.platform.startswith("linux"):
            return False, "no DISPLAY or WAYLAND_DISPLAY is set (no desktop session)"
    return True, ""


class WindowFrontend:
    """A resizable OpenGL window showing the world's frames with a HUD."""

    warps = True  # present() takes `rel`: frames between ticks

    def __init__(self, keymap: Keymap, title: str = "dreamwalk", size: tuple[int, int] = (640, 640),
                 filter: str = "linear", max_fps: float = 60.0, capture_mouse: bool = True) -> None:
        ok, why = display_available()
        if not ok:
            raise DisplayError(why)
        self.keymap = keymap
        self.max_fps = max_fps
        pygame.display.init()
        pygame.font.init()
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MAJOR_VERSION, 3)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MINOR_VERSION, 3)
        pygame.display.gl_set_attribute(pygame.GL_CONTEXT_PROFILE_MASK, pygame.GL_CONTEXT_PROFILE_CORE)
        pygame.display.gl_set_attribute(pygame.GL_DEPTH_SIZE, 24)  # the warped mesh is depth-tested
        flags = pygame.OPENGL | pygame.DOUBLEBUF | pygame.RESIZABLE
        try:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # "vsync not available" is expected on Xvfb / offscreen
                    pygame.display.set_mode(size, flags, vsync=1)
            except pygame.error:
                pygame.display.set_mode(size, flags)  # no vsync on this driver (Xvfb, offscreen)
        except pygame.error as e:
            pygame.display.quit()
            raise DisplayError(f"could not open an OpenGL window: {e}") from None
        pygame.display.set_caption(title)
        import moderngl

        try:
            self.ctx = moderngl.create_context()
        except Exception:
            try:  # SDL's offscreen driver makes EGL contexts
                self.ctx = moderngl.create_context(backend="egl")
            except Exception as e:
                pygame.display.quit()
                raise DisplayError(f"the window has no usable OpenGL 3.3 context: {e}") from None
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        quad = np.array([-1, -1, 1, -1, -1, 1, 1, 1], np.float32)
        self.vbo = self.ctx.buffer(quad.tobytes())
        self.vao = self.ctx.vertex_array(self.prog, [(self.vbo, "2f", "in_pos")])
        self.frame_tex = None
        self.warp = WarpMesh(self.ctx)
        self._target = None  # frames between ticks are drawn here first (_warp_target)
        self.linear = filter == "linear"
        self.show_hud = True
        self.font = pygame.font.Font(None, 20)
        self.big_font = pygame.font.Font(None, 24)
        self._hud_tex = self._help_tex = None
        self._hud_key: tuple | None = None
        self._hud_time = 0.0
        self.captured = False
        self.quit_armed = True  # Esc with the mouse free quits; not after a focus change freed it (the next Esc arms)
        self._last: tuple[Observation, Hud, np.ndarray | None] | None = None
        if capture_mouse:
            self.capture(True)

    # -- input ----------------------------------------------------------------------------------

    def capture(self, on: bool) -> None:
        """Capture the mouse for look (hidden cursor, relative motion) or release it."""
        self.captured = on
        pygame.event.set_grab(on)
        pygame.mouse.set_visible(not on)
        pygame.mouse.get_rel()  # discard the jump accumulated while released

    def poll(self, inp: InputAccumulator, now: float) -> list[str]:
        commands: list[str] = []
        km = self.keymap
        for ev in pygame.event.get():
            if ev.type == pygame.QUIT:
                commands.append("quit")
            elif ev.type == pygame.KEYDOWN:
                if ev.key in km.actions:
                    inp.press(km.actions[ev.key], now)
                elif ev.key in km.look_keys:
                    inp.press(km.look_keys[ev.key], now)
                elif ev.key in km.commands:
                    name = km.commands[ev.key]
                    if name == "release_mouse":
                        if self.captured:
                            self.capture(False)
                            self.quit_armed = True
                        elif self.quit_armed:
                            commands.append("quit")
                        else:  # the mouse was freed by a focus change, not by Esc: this Esc only arms the quit
                            self.quit_armed = True
                    elif name == "filter":
                        self.linear = not self.linear
                    elif name == "hud":
                        self.show_hud = not self.show_hud
                    else:
                        commands.append(name)
            elif ev.type == pygame.KEYUP:
                binding = km.actions.get(ev.key) or km.look_keys.get(ev.key)
                if binding:
                    inp.release(binding, now)
            elif ev.type == pygame.MOUSEMOTION and self.captured:
                inp.mouse(ev.rel[0], ev.rel[1], now)
            elif ev.type == pygame.MOUSEBUTTONDOWN and not self.captured:
                self.capture(True)
            elif ev.type == pygame.WINDOWFOCUSLOST:
                inp.release_all()  # the key-up events will go to another window
                self.quit_armed = False  # back in the window, an Esc meant to free the mouse must not quit
                if self.captured:
                    self.capture(False)
        return commands

    # -- output ---------------------------------------------------------------------------------

    def present(self, obs: Observation, hud: Hud, rel: np.ndarray | None = None) -> None:
        """Show `obs`'s frame, from its own camera, or with `rel` (engine.warp.relative: the frame's camera
        coordinates -> the view's) reprojected to the view by its depth."""
        self._last = (obs, hud, rel)
        self._draw(obs, hud, rel)
        pygame.display.flip()

    def _draw(self, obs: Observation, hud: Hud, rel: np.ndarray | None = None) -> None:
        import moderngl

        ctx = self.ctx
        w, h = pygame.display.get_window_size()
        ctx.screen.use()
        ctx.viewport = (0, 0, w, h)
        fh, fw = obs.rgb.shape[:2]
        if self.frame_tex is None or self.frame_tex.size != (fw, fh):
            if self.frame_tex is not None:
                self.frame_tex.release()
            self.frame_tex = ctx.texture((fw, fh), 3)
            self.frame_tex.repeat_x = self.frame_tex.repeat_y = False
        self.frame_tex.write(np.ascontiguousarray(obs.rgb).tobytes())
        mode = moderngl.LINEAR if self.linear else moderngl.NEAREST
        self.frame_tex.filter = (mode, mode)
        # Letterbox: the largest rectangle of the frame's aspect that fits the window.
        scale = min(w / fw, h / fh)
        vw, vh = max(1, int(round(fw * scale))), max(1, int(round(fh * scale)))
        if (vw, vh) != (w, h):  # the bars (the frame covers the rest)
            ctx.clear(0.0, 0.0, 0.0)
        ctx.viewport = ((w - vw) // 2, (h - vh) // 2, vw, vh)
        # The frame as it is; with frames between ticks, its reprojection with the frame behind it: what the mesh
        # leaves uncovered (its triangles cut by the near plane when the view walks past something the frame shows
        # close) shows the frame there, never black. The mesh is drawn first and the frame after it at the far plane,
        # depth-tested, so only those holes are shaded twice; and both into a target of at most twice the frame's
        # size, which the window then shows scaled like the frame itself (llvmpipe, a 128 px frame in 640 px:
        # 7.9 -> 4.9 ms a present).
        warp = rel is not None and obs.depth is not None and obs.K is not None
        if warp:
            target = self._warp_target(min(vw, 2 * fw), min(vh, 2 * fh))
            target.use()
            ctx.viewport = (0, 0, *target.size)
            ctx.clear(0.0, 0.0, 0.0, depth=1.0)
            self.warp.draw(self.frame_tex, obs.depth, obs.K, rel)
            ctx.enable(moderngl.DEPTH_TEST)
            ctx.depth_func = "<="
            self.prog["depth"].value = 1.0
            self.frame_tex.use(0)
            self.vao.render(moderngl.TRIANGLE_STRIP)
            ctx.depth_func = "<"
            ctx.disable(moderngl.DEPTH_TEST)
            self.prog["depth"].value = 0.0
            ctx.screen.use()
            ctx.viewport = ((w - vw) // 2, (h - vh) // 2, vw, vh)
            shown = target.color_attachments[0]
            shown.filter = (mode, mode)
            self.prog["rendered"].value = 1.0
        else:
            shown = self.frame_tex
        shown.use(0)
        self.vao.render(moderngl.TRIANGLE_STRIP)
        self.prog["rendered"].value = 0.0
        if self.show_hud:
            self._draw_overlay(self._hud_texture(hud, w), HUD_MARGIN, HUD_MARGIN, w, h)
        if hud.show_help:
            self._draw_overlay(self._help_texture(), None, None, w, h)

    def _warp_target(self, width: int, height: int):
        """The offscreen colour + depth target frames between ticks are drawn into (kept while its size holds)."""
        if self._target is None or self._target.size != (width, height):
            if self._target is not None:
                for a in (*self._target.color_attachments, self._target.depth_attachment):
                    a.release()
                self._target.release()
            color = self.ctx.texture((width, height), 3)
            color.repeat_x = color.repeat_y = False
            self._target = self.ctx.framebuffer(color_attachments=[color],
                                                depth_attachment=self.ctx.depth_renderbuffer((width, height)))
        return self._target

    def loading(self, text: str) -> None:
        """A loading screen while the world starts (instead of a black window): `text` centred, e.g. "loading the
        model…". Call it again to change the text; the window stays responsive to the desktop meanwhile."""
        pygame.event.pump()
        w, h = pygame.display.get_window_size()
        self.ctx.screen.use()
        self.ctx.viewport = (0, 0, w, h)
        self.ctx.clear(0.06, 0.07, 0.10)
        tex = self._text_texture([("dreamwalk", (255, 255, 255)), (text, (220, 220, 220))], self.big_font)
        self._draw_overlay(tex, None, None, w, h)
        tex.release()
        pygame.display.flip()

    def _draw_overlay(self, tex, x: int | None, y_top: int | None, w: int, h: int) -> None:
        """Draw a text texture with its top-left at (x, y_top); None for both: centred, and scaled down to fit the
        window when it is larger (overlay_rect)."""
        import moderngl

        tw, th = tex.size
        if x is None or y_top is None:
            x, y_top, tw, th = overlay_rect((tw, th), (w, h))
            mode = moderngl.LINEAR if (tw, th) != tex.size else moderngl.NEAREST
            tex.filter = (mode, mode)
        self.ctx.viewport = (x, h - y_top - th, tw, th)  # GL's origin is bottom-left
        self.ctx.enable(moderngl.BLEND)
        self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        tex.use(0)
        self.vao.render(moderngl.TRIANGLE_STRIP)
        self.ctx.disable(moderngl.BLEND)
        self.ctx.viewport = (0, 0, w, h)

    def _text_texture(self, lines: list[tuple[str, tuple[int, int, int]]], font, dot: bool = False, old=None):
        rendered = [font.render(text, True, color) for text, color in lines]
        pad = HUD_PAD
        width = max([r.get_width() for r in rendered] + [10]) + 2 * pad + (HUD_DOT if dot else 0)
        height = sum(r.get_height() for r in rendered) + 2 * pad
        surface = pygame.Surface((width, height), pygame.SRCALPHA)
        surface.fill((0, 0, 0, 150))
        y = pad
        for r in rendered:
            surface.blit(r, (pad, y))
            y += r.get_height()
        if dot:
            pygame.draw.circle(surface, (230, 30, 30, 255), (width - 12, 12), 6)
        if old is not None:
            old.release()
        tex = self.ctx.texture((width, height), 4, pygame.image.tobytes(surface, "RGBA"))
        return tex

    def _hud_texture(self, hud: Hud, window_width: int):
        key = (hud.world, hud.paused, hud.recording, hud.message, hud.world_text, self.captured, window_width)
        now = time.perf_counter()
        # Text rendering costs ~1 ms: redo it when the content changes or four times a second.
        if self._hud_tex is not None and key == self._hud_key and now - self._hud_time < 0.25:
            return self._hud_tex
        text_width = window_width - 2 * HUD_MARGIN - 2 * HUD_PAD - HUD_DOT
        lines = hud_lines(hud, self.captured, text_width, lambda t: self.font.size(t)[0])
        self._hud_tex = self._text_texture(lines, self.font, dot=hud.recording, old=self._hud_tex)
        self._hud_key, self._hud_time = key, now
        return self._hud_tex

    def _help_texture(self):
        if self._help_tex is None:
            font, pad = self.big_font, 10
            rows = [(font.render(what, True, (255, 230, 140)), font.render(keys, True, (235, 235, 235)))
                    for what, keys in self.keymap.help_rows() + HUD_LEGEND]
            title = font.render("Controls (F1 closes)", True, (255, 255, 255))
            foot = self.font.render(f"bindings: {self.keymap.source}", True, (160, 160, 160))
            col = max(r[0].get_width() for r in rows) + 16  # the keys column starts after the widest name
            width = max([col + r[1].get_width() for r in rows] + [title.get_width(), foot.get_width()]) + 2 * pad
            line = rows[0][0].get_height()
            height = (len(rows) + 1) * line + foot.get_height() + 2 * pad + 6
            surface = pygame.Surface((width, height), pygame.SRCALPHA)
            surface.fill((0, 0, 0, 190))
            surface.blit(title, (pad, pad))
            for i, (what, keys) in enumerate(rows):
                y = pad + (i + 1) * line + 4
                surface.blit(what, (pad, y))
                surface.blit(keys, (pad + col, y))
            surface.blit(foot, (pad, height - pad - foot.get_height()))
            self._help_tex = self.ctx.texture((width, height), 4, pygame.image.tobytes(surface, "RGBA"))
        return self._help_tex

    def screenshot(self, path: Path) -> list[Path]:
        """Save the window as shown (`path`) and the world's frame at its own resolution (`*-frame.png`)."""
        if self._last is None:
            return []
        obs, hud, rel = self._last
        self._draw(obs, hud, rel)  # redraw into the back buffer: the front buffer is not readable reliably
        w, h = pygame.display.get_window_size()
        data = self.ctx.screen.read(viewport=(0, 0, w, h), components=3)
        shown = np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1]
        save_png(shown, path)
        frame_path = path.with_name(path.stem + "-frame.png")
        save_png(obs.rgb, frame_path)
        return [path, frame_path]

    def close(self) -> None:
        try:
            self.capture(False)
        except pygame.error:
            pass
        pygame.display.quit()
