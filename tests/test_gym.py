"""gymnasium environments over engine worlds."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import engine  # noqa: F401  (registers the dreamwalk/* ids)
from engine.action import ActionError


@pytest.mark.parametrize("env_id, config", [("dreamwalk/Plane-v0", {"width": 24, "height": 16}),
                                            ("dreamwalk/Arena-v0", {"width": 32, "height": 32})])
@pytest.mark.parametrize("observation", ["rgb", "dict"])
def test_check_env_passes(env_id, config, observation):
    env = gymnasium.make(env_id, world_config=config, observation=observation)
    check_env(env.unwrapped, skip_render_check=False)
    env.close()


def test_spaces_match_the_engine_encoding_and_hooks_work():
    rewards = []

    def reward(prev, action, obs):
        return float(action.forward)

    env = gymnasium.make("dreamwalk/Plane-v0", world_config={"width": 16, "height": 16}, observation="dict",
                         reward_fn=reward, terminate_fn=lambda obs: obs.tick >= 3, max_steps=10, render_mode="rgb_array")
    obs, info = env.reset(seed=4)
    assert set(obs) == {"rgb", "depth", "cam_to_world", "K"} and obs["rgb"].shape == (16, 16, 3)
    assert env.action_space.shape == (8,)
    for i in range(3):
        obs, r, terminated, truncated, info = env.step(np.array([1, 0, 0, 0, 0, 0, 5.0, 0], np.float32))
        rewards.append(r)
    assert rewards == [1.0, 1.0, 1.0] and terminated and not truncated
    assert env.render().shape == (16, 16, 3)
    with pytest.raises(ActionError, match="outside the action space"):
        env.step(np.array([0, 0, 0, 0, 0, 0, 500.0, 0], np.float32))
    with pytest.raises(ActionError, match="outside the action space"):
        env.step(np.array([0, 0, 0, 0, 0, 0, np.nan, 0], np.float32))


def test_same_seed_same_episode():
    env = gymnasium.make("dreamwalk/Arena-v0", world_config={"width": 16, "height": 16})
    a = [env.reset(seed=9)[0]] + [env.step(np.array([1, 0, 0, 0, 0, 0, 2.0, 0], np.float32))[0] for _ in range(5)]
    b = [env.reset(seed=9)[0]] + [env.step(np.array([1, 0, 0, 0, 0, 0, 2.0, 0], np.float32))[0] for _ in range(5)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    env.close()
