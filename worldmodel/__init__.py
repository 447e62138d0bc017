"""The neural world model: frame autoencoder, dynamics transformer, training, evaluation, the dream World.

Importing this package registers the "dream" world with the engine (the engine itself never imports it).
"""

import os

# Idle OpenMP threads must sleep, not spin: with two cores, a spinning thread of ours steals the core the
# other thread (or the game loop, or the renderer) needs, and a 30 ms tick becomes 500 ms. This only
# works if set before torch is first imported, which importing this package before torch ensures.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from engine.world import register_world  # noqa: E402

register_world("dream", "worldmodel.dream:DreamWorld", "the neural dream: a trained model steps the world")
register_world("split", "worldmodel.split:SplitWorld", "dream | ground truth side by side, same actions (Tab cycles views)")
