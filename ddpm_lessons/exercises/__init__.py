"""Self-checking exercises: one ``check_*`` per coding exercise in the book, one module per chapter.

Each checker runs the student's function on random and edge-case inputs, compares it with the
module's reference, and prints either a short success message or the *first* thing that is wrong,
in words. It returns True or False, so a notebook can ``assert`` it and an autograder can count it.
The checkers' own tests (tests/exercises/) show that the reference passes and typical wrong
answers are caught with the right explanation.
"""
from ._harness import ExerciseMistake
from .ch1 import check_amount_conditioned_unet, check_corrupt, check_corrupt_gaussian, check_naive_sampler
from .ch2 import check_q_sample
from .ch3 import check_p_sample, check_q_posterior
from .ch4 import check_loss, check_predict_x0_loss, check_training_step
from .ch5 import check_ema_update, check_resnet_block, check_sinusoidal_embedding
from .ch6 import check_ddim_inversion, check_ddim_step, check_respaced_betas, check_step_schedule
from .ch7 import check_drop_labels, check_guided_eps

__all__ = [
    "ExerciseMistake",
    "check_corrupt", "check_corrupt_gaussian", "check_amount_conditioned_unet", "check_naive_sampler",
    "check_q_sample",
    "check_q_posterior", "check_p_sample",
    "check_loss", "check_predict_x0_loss", "check_training_step",
    "check_sinusoidal_embedding", "check_resnet_block", "check_ema_update",
    "check_ddim_step", "check_step_schedule", "check_respaced_betas", "check_ddim_inversion",
    "check_drop_labels", "check_guided_eps",
]
