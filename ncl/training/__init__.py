"""Training and evaluation on the algorithmic tasks (``ncl train``, ``ncl eval``).

Modules: :mod:`~ncl.training.config` (:class:`TrainConfig`, which nests the computer's
:class:`~ncl.computer.ComputerConfig`, which nests the :class:`~ncl.machine.MachineConfig`),
:mod:`~ncl.training.data` (tokenizer, batches, encoding), :mod:`~ncl.training.losses` (the auxiliary loss),
:mod:`~ncl.training.factory` (the model of a config), :mod:`~ncl.training.checkpoints` (save, load: safetensors
and JSON), :mod:`~ncl.training.convert` (old pickle checkpoints, ``ncl convert``), :mod:`~ncl.training.loop`
(:func:`train`) and :mod:`~ncl.training.evaluation` (accuracy per split, plots, the results table).
"""

from ncl.training.checkpoints import (CHECKPOINT, LATEST, LEGACY_CHECKPOINT, CheckpointError, LegacyCheckpointError,
                                      checkpoint_dirs, has_checkpoint, load_checkpoint, load_model, save_checkpoint,
                                      write_checkpoint)
from ncl.training.config import MODELS, NUMBERS, TrainConfig
from ncl.training.convert import convert_run_dir
from ncl.training.data import batch_for_step, encode, tokenizer
from ncl.training.evaluation import (EVAL_MAX_STEPS, EVAL_SEED, EVAL_SPLITS, evaluate_run, evaluate_split,
                                     markdown_table, plot, plot_steps, run_eval, summary)
from ncl.training.factory import auto_max_steps, build_model, resolve_numbers
from ncl.training.losses import aux_loss
from ncl.training.loop import METRICS, learning_rate, train

__all__ = ["CHECKPOINT", "EVAL_MAX_STEPS", "EVAL_SEED", "EVAL_SPLITS", "LATEST", "LEGACY_CHECKPOINT", "METRICS",
           "MODELS", "NUMBERS", "CheckpointError", "LegacyCheckpointError", "TrainConfig", "auto_max_steps", "aux_loss",
           "batch_for_step", "build_model", "checkpoint_dirs", "convert_run_dir", "encode", "evaluate_run",
           "evaluate_split", "has_checkpoint", "learning_rate", "load_checkpoint", "load_model", "markdown_table",
           "plot", "plot_steps", "resolve_numbers", "run_eval", "save_checkpoint", "summary", "tokenizer", "train",
           "write_checkpoint"]
