"""`Trainer`: a training run, the stages (functions of its TrainContext) in order."""

from __future__ import annotations

import time

from worldmodel.training.adversarial import adversarial_post_train
from worldmodel.training.autoencoder import train_autoencoder
from worldmodel.training.common import play_command
from worldmodel.training.context import TrainContext
from worldmodel.training.decoder import sharpen_decoder
from worldmodel.training.dynamics import train_dynamics


class Trainer(TrainContext):
    """A training run in `out`: `run()` does the stages in order, resumably (each a function of the context)."""

    stage_of: str = ""  # the staged run (worldmodel/training/pipeline.py) this is a stage of, if any

    def run(self) -> None:
        t0 = time.time()
        train_autoencoder(self)
        sharpen_decoder(self)
        self.ae.eval()
        stage = "decoder" if self.cfg.steps == 0 else "dynamics"  # steps 0: init_from's dynamics kept
        if stage == "dynamics":
            train_dynamics(self)
        if self.cfg.adv_steps > 0:
            adversarial_post_train(self)
            stage = "adversarial"
        self.export(stage, self.step[stage])  # the step the weights are at (not train.steps)
        self.say(f"done in {(time.time() - t0) / 60:.1f} min at {stage} step {self.step[stage]}: model in {self.out}"
                 + ("" if self.stage_of else f" (play it: {play_command(self.out, self.prompt_info()['prompt_world'])})"))
