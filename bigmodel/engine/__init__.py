"""Training and evaluation: config, loop, one step's loss/optimizer/schedule, run folder, checkpoints,
metrics, distributed launch."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config_file, make_config, parse_model_options, resolve
from .evaluate import evaluate_checkpoint, evaluate_split
from .metrics import EvalResult, per_class_metrics
from .rundir import new_run_dir
from .steps import loss_and_correct, make_optimizer, make_scheduler
from .trainer import Reporter, Trainer, TrainResult, train

__all__ = [
    "EvalResult", "Reporter", "TrainConfig", "TrainResult", "Trainer", "evaluate_checkpoint", "evaluate_split",
    "load_checkpoint", "load_config_file", "loss_and_correct", "make_config", "make_optimizer", "make_scheduler",
    "new_run_dir", "parse_model_options", "per_class_metrics", "resolve", "save_checkpoint", "train",
]
