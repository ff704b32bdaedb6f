"""The run folder (OUT/NAME/): choosing its name and writing what a run leaves beside its checkpoints.

config.yaml (the resolved config, reusable with --config), metrics.jsonl (one line per epoch) and
curves.png. Every file is written atomically, so a stopped run never leaves half a file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .. import _io
from ..errors import ConfigError
from .config import TrainConfig


def new_run_dir(cfg: TrainConfig) -> Path:
    """The folder a new run of `cfg` writes to; nothing is created.

    With cfg.name: OUT/NAME, refused (ConfigError) if it already holds a run's last.pt. Without:
    OUT/MODEL-YYYYmmdd-HHMMSS, with -2, -3, ... appended while that folder exists. A multi-process
    launch calls this once, before the workers start, so that all of them write to one folder.
    """
    root = Path(cfg.out)
    if cfg.name:
        d = root / cfg.name
        if (d / "last.pt").exists():
            raise ConfigError(f"{d} already holds a run; resume it with --resume {d / 'last.pt'} or choose another --name")
        return d
    base = f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    d, i = root / base, 2
    while d.exists():
        d, i = root / f"{base}-{i}", i + 1
    return d


def environment() -> dict[str, Any]:
    """What a run's result depends on besides its config: versions, ISA, thread count."""
    import bigmodel

    return {"bigmodel": str(bigmodel.__version__), "torch": str(torch.__version__), "isa": bigmodel.active_isa(),
            "threads": torch.get_num_threads()}


def config_yaml(cfg: TrainConfig, layers: dict[str, list[str]], env: dict[str, Any]) -> str:
    import yaml

    body = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
    info = yaml.safe_dump({"layers": layers, "environment": env}, sort_keys=False)
    return ("# bigmodel train: resolved configuration (reusable with --config)\n" + body
            + "# for information (ignored when read back): where each layer came from, and the environment\n"
            + info)


def write_metrics(run_dir: Path, records: list[dict[str, Any]]) -> None:
    _io.write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))


def plot(run_dir: Path, records: list[dict[str, Any]], task: str, on_message: Callable[[str], None], title: str) -> None:
    """curves.png, if matplotlib is installed (else a message saying how to get it)."""
    if not records:
        return
    try:
        from .plot import plot_curves

        plot_curves(run_dir / "curves.png", records, task, title)
    except ImportError as exc:
        on_message(f"no plot written ({exc}); `pip install matplotlib` for curves.png")
