"""The training of a world model (run it with python -m worldmodel.train), in parts:

- `common.py`: the `train:` config, fault-injection hooks, random states, distributed set-up, one optimizer step
  (`apply_gradients`), the metric log and LR schedule, the run's train.yaml;
- `context.py`: `TrainContext`, what every stage works on (the run's set-up, data, networks, steps) and the
  state/checkpoint helpers;
- the stages, each a function of the context: `autoencoder.py` (stage 1, the frame autoencoder and its latent
  normalisation), `decoder.py` (1b, the decoder sharpened), `dynamics.py` (stage 2, the dynamics on clips of
  latents), `adversarial.py` (2b, adversarial post-training); and what they train on: `data.py` (the frames, and the
  latents of every frame with their memory images, both cached), `memory_images.py` (the memory-image generators:
  reprojection, splat memory, splat of predicted frames, the model's own rollouts; `memory_batch`), `rollouts.py`;
- `pipeline.py`: the staged run of the presets (split, base, camera, memory, choose), `eta.py` its ETA;
  `upsampler.py`: the shown-frame upsampler's own training command.

`trainer.py`: `Trainer`, the context with `run()`, the stages in order; `worldmodel.train` is the command line.
"""
