"""Classification and language-model metrics from sums that can be reduced across processes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EvalResult:
    """loss: mean cross-entropy per prediction (per example, or per token for an LM).
    accuracy: fraction of correct predictions. confusion[i, j]: true class i predicted as j."""

    task: str
    loss: float
    accuracy: float
    count: int  # examples (classify) or tokens (lm)
    confusion: torch.Tensor | None = None
    classes: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    def per_class(self) -> list[dict[str, Any]]:
        return per_class_metrics(self.confusion, self.classes) if self.confusion is not None else []

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"task": self.task, "loss": self.loss, "accuracy": self.accuracy, "count": self.count}
        if self.task == "lm":
            d["perplexity"] = self.perplexity
        if self.confusion is not None:
            d["classes"] = self.classes
            d["per_class"] = self.per_class()
            d["confusion_matrix"] = self.confusion.tolist()
            pc = d["per_class"]
            d["macro_f1"] = sum(c["f1"] for c in pc) / len(pc) if pc else 0.0
        d.update(self.extra)
        return d


def per_class_metrics(confusion: torch.Tensor, classes: list[str] | None = None) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class; 0 where a denominator is 0."""
    cm = confusion.to(torch.float64)
    tp = cm.diag()
    predicted = cm.sum(0)
    actual = cm.sum(1)
    out = []
    for i in range(cm.shape[0]):
        p = float(tp[i] / predicted[i]) if predicted[i] > 0 else 0.0
        r = float(tp[i] / actual[i]) if actual[i] > 0 else 0.0
        f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
        out.append({"class": classes[i] if classes else str(i), "precision": p, "recall": r, "f1": f1,
                    "support": int(actual[i])})
    return out
