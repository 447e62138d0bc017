"""The training of a world model (run it with python -m worldmodel.train), in parts:

- `common.py`: the `train:` config, fault-injection hooks, random states, distributed set-up, one optimizer step
  (`apply_gradients`), the metric log and LR schedule, the run's train.yaml, and `TrainerBase` (the trainer's
  set-up and the state/checkpoint helpers of its loop);
- `data.py`: the frames of the recordings, and the latents of every frame with their memory images (both cached);
- `autoencoder.py`: stage 1, the frame autoencoder and its latent normalisation;
- `memory_images.py`: the memory-image generators (reprojection, splat memory, splat of predicted frames) and
  `memory_batch`;
- `dynamics.py`: stage 2, the dynamics on clips of latents.

`worldmodel.train.Trainer` combines the stages with `TrainerBase`; `worldmodel.train` is the command line.
"""
