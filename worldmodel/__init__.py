"""The neural world model: frame autoencoder, dynamics transformer, training, evaluation, the dream World.

Importing this package registers the "dream" world with the engine (the engine itself never imports it).
"""

from engine.world import register_world

register_world("dream", "worldmodel.dream:DreamWorld", "the neural dream: a trained model steps the world")
register_world("split", "worldmodel.split:SplitWorld", "dream | ground truth side by side, same actions (Tab cycles views)")
