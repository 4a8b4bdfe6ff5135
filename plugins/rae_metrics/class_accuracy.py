"""Class accuracy of class-conditional samples: does a classifier see the digit each sample was asked for?

The classifier is any feature extractor with logits (default ``digits-classifier``). The engine's evaluate
stage passes the labels the samples were generated for (``samples.npz``'s ``arr_1``) to metrics whose
``needs_labels`` is true: ``update(generated=images, labels=labels)``. State: per-class counts of samples and
of correct ones (both summed across ranks), so the overall and the per-class accuracies merge exactly.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from rae_framework.errors import ConfigError
from rae_metrics.configs import ClassAccuracyConfig
from rae_metrics.fid import FeatureMetric
from rae_metrics.state import Reduction


class ClassAccuracy(FeatureMetric):
    """``class_accuracy`` (all samples), ``class_accuracy_mean`` (mean over classes) and
    ``class_accuracy_<c>`` per class, each labelled ``@<classifier>`` for a non-standard classifier."""

    Config = ClassAccuracyConfig
    needs_labels: ClassVar[bool] = True  # the engine passes the samples' labels
    state_reductions: ClassVar[dict[str, Reduction]] = {"count": "sum", "correct": "sum"}

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None,
               labels: torch.Tensor | None = None) -> None:
        """Classify generated images ``(B, 3, H, W)`` in [0, 1] against their ``labels`` ``(B,)``."""
        if generated is None or labels is None:
            raise ValueError("class-accuracy: pass generated images and the labels they were generated for")
        logits = self._features(generated).logits
        if logits is None:
            raise ConfigError(f"feature extractor '{self.config.features.name}' has no logits to classify with")
        labels = labels.cpu().long()  # (B,)
        if labels.shape != logits.shape[:1] or labels.min() < 0 or labels.max() >= logits.shape[1]:
            raise ValueError(f"class-accuracy: {len(logits)} images need {len(logits)} labels in "
                             f"[0, {logits.shape[1]}), got shape {tuple(labels.shape)}")
        correct = (logits.argmax(1) == labels).double()  # (B,)
        classes = logits.shape[1]
        self._add_state("count", torch.bincount(labels, minlength=classes).double())
        self._add_state("correct", torch.bincount(labels, weights=correct, minlength=classes).double())

    def _empty_state(self, name: str) -> torch.Tensor:
        return torch.zeros(self.extractor.num_logits, dtype=torch.float64)

    def compute(self) -> dict[str, float]:
        """Overall, mean-over-classes and per-class accuracy (classes without samples are left out)."""
        state = self.state_tensors()
        count, correct = state["count"], state["correct"]  # (K,), (K,)
        if count.sum() == 0:
            raise ValueError("class-accuracy: no samples were added")
        present = count > 0
        per_class = correct[present] / count[present]
        values = {"class_accuracy": float(correct.sum() / count.sum()),
                  "class_accuracy_mean": float(per_class.mean())}
        values.update({f"class_accuracy_{int(c)}": float(correct[c] / count[c]) for c in present.nonzero()[:, 0]})
        return {self.key(name): value for name, value in values.items()}
