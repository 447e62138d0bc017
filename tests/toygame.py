"""A tiny game that is not the arena: the own-game guide's example, used by its end-to-end test.

A "corridor" of coloured stripes seen from above; forward/back scroll it, left/right shift it, yaw
tints it. RGB only: no depth, no pose — the minimum a World must give.
"""

import numpy as np

from engine import Action, Observation, World


class StripeGame(World):
    name = "stripes"
    deterministic = True

    def __init__(self, width: int = 32, height: int = 32) -> None:
        self.width, self.height = width, height
        self.x = self.y = self.hue = 0.0
        self.tick = 0

    @property
    def config(self) -> dict:
        return {"width": self.width, "height": self.height}

    def reset(self, seed: int) -> Observation:
        rng = np.random.default_rng(seed)
        self.x, self.y, self.hue = rng.uniform(0, 10), rng.uniform(0, 10), rng.uniform(0, 1)
        self.tick = 0
        return self._observe()

    def step(self, action: Action) -> Observation:
        speed = 2.0 if action.sprint else 1.0
        self.y += speed * (float(action.forward) - float(action.back))
        self.x += speed * (float(action.right) - float(action.left))
        self.hue = (self.hue + action.yaw / 360.0) % 1.0
        self.tick += 1
        return self._observe()

    def _observe(self) -> Observation:
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float32)
        stripes = (np.sin((v + self.y) * 0.5) * 0.5 + 0.5)[..., None]
        checks = (((u + self.x) // 4 + (v + self.y) // 4) % 2)[..., None]
        base = np.array([np.cos(self.hue * 6.28), np.sin(self.hue * 6.28), 0.5]) * 0.4 + 0.5
        rgb = (stripes * base + 0.25 * checks) * 200
        return Observation(rgb=np.clip(rgb, 0, 255).astype(np.uint8), tick=self.tick)


def policy(obs: Observation) -> Action:
    """A deterministic wander for recording: forward mostly, a strafe and a turn now and then."""
    t = obs.tick
    return Action(forward=t % 7 != 0, left=t % 11 == 0, right=t % 13 == 0, yaw=5.0 if t % 5 == 0 else 0.0)
