"""Training and evaluation: config, loop, checkpoints, metrics, distributed launch."""

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config_file, make_config, parse_model_options, resolve
from .evaluate import evaluate_checkpoint, evaluate_split
from .metrics import EvalResult, per_class_metrics
from .trainer import Reporter, Trainer, TrainResult, train

__all__ = [
    "EvalResult", "Reporter", "TrainConfig", "TrainResult", "Trainer", "evaluate_checkpoint", "evaluate_split",
    "load_checkpoint", "load_config_file", "make_config", "parse_model_options", "per_class_metrics", "resolve",
    "save_checkpoint", "train",
]
