"""The honest demo: the dream and the ground truth side by side, driven by the same actions.
A policy sees the ground truth as that world alone gives it (depth and pose included: `Observation.policy_view`).

`python play.py --world split` shows [dream | ground truth]; Tab cycles split → dream → ground truth.
The ground truth is the model's prompt world (the arena, or `prompt_world`), rendered at the data resolution and
area-resized to the model's, exactly as the training data was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.action import Action
from engine.world import Observation, World, make_world
from worldmodel.data import area_resize
from worldmodel.dream import DreamWorld

VIEWS = ("split", "dream", "truth")


class SplitWorld(World):
    """[dream | truth] in one frame; both step with every action."""

    name = "split"
    deterministic = True
    commands = {"view": ("tab", "cycle views: split, dream, truth"), **DreamWorld.commands}

    def __init__(self, checkpoint: str | None = None, steps: int = 1, memory: bool | None = None, view: str = "split",
                 device: str = "auto", prompt_world: str | None = None, camera: str | None = None,
                 memory_first: bool | None = None, context_noise: float | None = None) -> None:
        """The dream's own settings (`memory`, `camera`, `memory_first`, `context_noise`: None takes the model's) as
        `--world dream` takes them."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        self.dream = DreamWorld(checkpoint=checkpoint, steps=steps, memory=memory, device=device, prompt_world=prompt_world,
                                camera=camera, memory_first=memory_first, context_noise=context_noise)
        self.truth = make_world(self.dream.prompt_name, **self.dream.prompt_config)
        self.view = view
        dc = self.dream.config
        self._config = dict(checkpoint=self.dream.checkpoint, steps=steps, memory=dc["memory"], view=view,
                            device=dc["device"], prompt_world=self.dream.prompt_name, camera=dc["camera"],
                            memory_first=dc["memory_first"], context_noise=dc["context_noise"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def model_hash(self) -> str:
        return self.dream.model_hash

    @property
    def model_settings_hash(self) -> str:
        return self.dream.model_settings_hash

    def attach_memory(self, memory) -> None:
        self.dream.attach_memory(memory)

    def reset(self, seed: int) -> Observation:
        return self._combine(self.dream.reset(seed), self.truth.reset(seed))

    def step(self, action: Action) -> Observation:
        return self._combine(self.dream.step(action), self.truth.step(action))

    def _combine(self, dream: Observation, truth: Observation) -> Observation:
        size = dream.rgb.shape[:2]
        gt = area_resize(truth.rgb[None], size)[0]
        if self.view == "dream":
            rgb, label = dream.rgb, "DREAM (Tab: next view)"
        elif self.view == "truth":
            rgb, label = gt, "GROUND TRUTH (Tab: next view)"
        else:
            gap = np.full((size[0], 1, 3), 255, np.uint8)
            rgb, label = np.concatenate([dream.rgb, gap, gt], axis=1), "left: DREAM   right: GROUND TRUTH (Tab)"
        info = dict(dream.info)
        info["hud"] = f"{label}   {dream.info.get('hud', '')}"
        info["truth_position"] = truth.info.get("position")
        # a policy sees the ground truth as it would alone (depth, pose): the dream follows the same actions
        return Observation(rgb=rgb, depth=None, cam_to_world=dream.cam_to_world, K=None, tick=dream.tick, info=info,
                           policy_view=truth)

    def hud_extra(self) -> str:
        return self.dream.hud_extra()

    def command(self, name: str) -> str | None:
        if name == "view":
            self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
            return f"view: {self.view}"
        return self.dream.command(name)

    def close(self) -> None:
        self.dream.close()
        self.truth.close()
