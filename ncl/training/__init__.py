"""Training and evaluation on the algorithmic tasks (``ncl train``, ``ncl eval``).

Modules: :mod:`~ncl.training.config` (:class:`TrainConfig`, which nests the computer's
:class:`~ncl.computer.ComputerConfig`, which nests the :class:`~ncl.machine.MachineConfig`),
:mod:`~ncl.training.data` (tokenizer, batches, encoding), :mod:`~ncl.training.losses` (the auxiliary loss),
:mod:`~ncl.training.factory` (the model of a config), :mod:`~ncl.training.checkpoints` (save, load: safetensors
and JSON), :mod:`~ncl.training.convert` (old pickle checkpoints, ``ncl convert``), :mod:`~ncl.training.loop`
(:func:`train`), :mod:`~ncl.training.evaluation` (accuracy per split or on a file), :mod:`~ncl.training.tooluse`
(the tool-use baseline's call and tool), :mod:`~ncl.training.plots` (figures) and :mod:`~ncl.training.report`
(the results tables of ``ncl report``).
"""

from ncl.training.checkpoints import (CHECKPOINT, LATEST, LEGACY_CHECKPOINT, CheckpointError, LegacyCheckpointError,
                                      checkpoint_dirs, has_checkpoint, load_checkpoint, load_model, save_checkpoint,
                                      write_checkpoint)
from ncl.training.config import MODELS, NUMBERS, TrainConfig
from ncl.training.convert import convert_run_dir
from ncl.training.data import batch_for_step, encode, tokenizer
from ncl.training.evaluation import (EVAL_SEED, answer_budget, comparison_table, evaluate_file, evaluate_run,
                                     read_jsonl, run_eval, summary)
from ncl.training.factory import build_model, machine_budget, resolve_numbers, segment_length
from ncl.training import report
from ncl.training.losses import aux_loss
from ncl.training.loop import METRICS, learning_rate, train

__all__ = ["CHECKPOINT", "EVAL_SEED", "LATEST", "LEGACY_CHECKPOINT", "METRICS", "MODELS", "NUMBERS", "CheckpointError",
           "LegacyCheckpointError", "TrainConfig", "answer_budget", "aux_loss", "batch_for_step", "build_model",
           "checkpoint_dirs", "comparison_table", "convert_run_dir", "encode", "evaluate_file", "evaluate_run",
           "has_checkpoint", "learning_rate", "load_checkpoint", "load_model", "machine_budget", "read_jsonl", "report",
           "resolve_numbers", "run_eval", "save_checkpoint", "segment_length", "summary", "tokenizer", "train",
           "write_checkpoint"]
