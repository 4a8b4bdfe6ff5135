"""Distribution metrics on one feature pipeline: FID (rFID/gFID), Inception Score, precision/recall.

All three build their feature network from a :class:`~rae_metrics.configs.ComponentRef` (kind
``feature_extractor``, default the FID Inception), featurise each ``update`` batch under ``no_grad`` and keep
mergeable state (:mod:`rae_metrics.state`): FID keeps sufficient statistics (count, sum, sum of outer
products; ``"sum"`` across ranks), IS and precision/recall keep the rows (``"cat"``). Values from a
non-standard extractor are reported under keys suffixed ``@<extractor>``, e.g. ``fid@random-conv``.

* FID = ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` (Heusel et al.); the trace of the root
  comes from symmetric eigenvalues (equal to pytorch-fid's ``scipy.linalg.sqrtm`` up to round-off). rFID: ``update(generated=reconstructions, reference=originals)``; gFID: samples vs a
  reference ``.npz``/folder (``reference`` param) or reference images passed to ``update``.
* IS = ``exp(E_x KL(p(y|x) || p(y)))`` over ``splits`` chunks (mean, std).
* Precision/recall (Kynkaanniemi et al. 2019): k-NN radii (k=3) around each feature; precision = share of
  generated features inside the reference manifold, recall = share of reference features inside the
  generated one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch

from rae_framework.config import ComponentConfig
from rae_framework.errors import ConfigError
from rae_framework.interfaces import Metric
from rae_metrics.configs import FIDConfig, InceptionScoreConfig, PrecisionRecallConfig
from rae_metrics.features import FeatureExtractor, Features, build_component, extractor_label, featurize
from rae_metrics.reference_batch import ReferenceSet, load_reference
from rae_metrics.state import MergeableState, Reduction


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1, S2``: the eigenvalues of ``S1 S2`` are those of the
    symmetric PSD ``S1^(1/2) S2 S1^(1/2)``, so two ``eigh`` replace scipy's general ``sqrtm`` (faster, real,
    no singular-matrix special case)."""
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T  # S1^(1/2)
    inner = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (float64)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt_product(sigma1, sigma2))


def gaussian_from_sums(count: torch.Tensor, total: torch.Tensor, outer: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance from ``n``, ``sum x`` ``(D,)`` and ``sum x x^T`` ``(D, D)``."""
    n = float(count)
    if n < 2:
        raise ValueError(f"FID needs at least 2 images per side, got {int(n)}")
    mu = (total / n).numpy()
    sigma = ((outer - n * torch.outer(total / n, total / n)) / (n - 1)).numpy()
    return mu, sigma


class FeatureMetric(MergeableState, Metric):
    """Shared pipeline: lazily built feature network (moved to the device of the images it is given),
    featurised updates (states kept on the CPU), the reference set."""

    paired: bool = False  # generated samples vs a reference set (rFID overrides: reconstructions vs originals)

    def __init__(self, config: ComponentConfig) -> None:
        Metric.__init__(self, config)
        self._extractor: FeatureExtractor | None = None
        self.reset()

    @property
    def extractor(self) -> FeatureExtractor:
        """The feature network (built on first use)."""
        if self._extractor is None:
            self._extractor = build_component("feature_extractor", self.config.features)
        return self._extractor

    def key(self, name: str) -> str:
        """``name`` labelled with the extractor when its numbers are non-standard."""
        return name + extractor_label(self.config.features, self.extractor)

    def reset(self) -> None:
        """Forget all batches (the feature network is kept)."""
        self._reset_state()

    def _features(self, images: torch.Tensor) -> Features:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} needs (B, 3, H, W) images, got {tuple(images.shape)}")
        return featurize(self.extractor.to(images.device), [images])  # the network follows the images' device

    def _sides(self, generated: torch.Tensor | None,
               reference: torch.Tensor | None) -> Iterator[tuple[str, Features]]:
        """``(side, features)`` of the given batches; reference images are skipped when the config names a
        reference set (it replaces them)."""
        if generated is None and reference is None:
            raise ValueError(f"{type(self).__name__}: pass generated and/or reference images")
        if getattr(self.config, "reference", None) is not None:
            reference = None
        for side, images in (("generated", generated), ("reference", reference)):
            if images is not None:
                yield side, self._features(images)

    def _reference_features(self, reference: ReferenceSet) -> Features:
        if not reference.has_images:
            raise ConfigError(f"{reference.source} holds only Inception statistics; {type(self).__name__} with "
                              f"'{self.config.features.name}' features needs reference images")
        return featurize(self.extractor, reference.batches(self.config.reference_batch_size))


class FID(FeatureMetric):
    """Frechet Inception Distance; ``key`` names the result (``fid``, ``rfid``, ``gfid``)."""

    Config = FIDConfig

    @property
    def paired(self) -> bool:
        """rFID compares reconstructions with their originals; other keys compare sample sets."""
        return self.config.key == "rfid"

    state_reductions: ClassVar[dict[str, Reduction]] = {
        "generated_count": "sum", "generated_sum": "sum", "generated_outer": "sum",
        "reference_count": "sum", "reference_sum": "sum", "reference_outer": "sum"}

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Accumulate generated and/or reference images ``(B, 3, H, W)`` in [0, 1]."""
        for side, features in self._sides(generated, reference):
            self._accumulate(side, features.pool)

    def _accumulate(self, side: str, pool: torch.Tensor) -> None:
        pool = pool.double()  # (B, D)
        self._add_state(f"{side}_count", torch.tensor(float(pool.shape[0])))
        self._add_state(f"{side}_sum", pool.sum(0))
        self._add_state(f"{side}_outer", pool.T @ pool)

    def _empty_state(self, name: str) -> torch.Tensor:
        dim = self.extractor.feature_dim
        shape = {"count": (), "sum": (dim,), "outer": (dim, dim)}[name.partition("_")[2]]
        return torch.zeros(shape, dtype=torch.float64)

    def _side(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        state = self.state_tensors()
        return gaussian_from_sums(state[f"{side}_count"], state[f"{side}_sum"], state[f"{side}_outer"])

    def _reference_gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        if self.config.reference is None:
            return self._side("reference")
        reference = load_reference(self.config.reference)
        if reference.mu is not None and reference.sigma is not None and self.extractor.standard:
            return reference.mu, reference.sigma
        pool = self._reference_features(reference).pool.double()  # (N, D)
        return gaussian_from_sums(torch.tensor(float(len(pool))), pool.sum(0), pool.T @ pool)

    def compute(self) -> dict[str, float]:
        """``{key: FID}`` between the generated and the reference Gaussians."""
        mu_g, sigma_g = self._side("generated")
        mu_r, sigma_r = self._reference_gaussian()
        return {self.key(self.config.key): frechet_distance(mu_g, sigma_g, mu_r, sigma_r)}


def inception_score(logits: torch.Tensor, splits: int) -> tuple[float, float]:
    """Mean and std over ``splits`` chunks of ``exp(mean KL(p(y|x) || p(y)))`` from logits ``(N, K)``."""
    if len(logits) < splits:
        raise ValueError(f"inception score needs at least {splits} images (one per split), got {len(logits)}")
    log_p = torch.log_softmax(logits.double(), dim=1)  # (N, K)
    scores = []
    for chunk in torch.tensor_split(log_p, splits):
        log_marginal = torch.logsumexp(chunk, dim=0) - np.log(len(chunk))  # (K,)
        kl = (chunk.exp() * (chunk - log_marginal)).sum(1)  # (n,)
        scores.append(kl.mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))


class InceptionScore(FeatureMetric):
    """Inception Score of generated images (``reference`` is ignored)."""

    Config = InceptionScoreConfig
    state_reductions: ClassVar[dict[str, Reduction]] = {"logits": "cat"}

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Accumulate the logits of generated images ``(B, 3, H, W)`` in [0, 1]."""
        if generated is None:
            raise ValueError("inception-score: pass generated images")
        logits = self._features(generated).logits
        if logits is None:
            raise ConfigError(f"feature extractor '{self.config.features.name}' has no logits for the IS")
        self._add_state("logits", logits)

    def compute(self) -> dict[str, float]:
        """``{"inception_score": mean, "inception_score_std": std}`` over splits."""
        mean, std = inception_score(self.state_tensors()["logits"], self.config.splits)
        return {self.key("inception_score"): mean, self.key("inception_score_std"): std}


def knn_radii(features: torch.Tensor, k: int, row_batch_size: int) -> torch.Tensor:
    """Distance of each row of ``(N, D)`` to its k-th nearest other row ``(N,)``."""
    if len(features) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} feature rows, got {len(features)}")
    radii = [torch.cdist(rows, features).kthvalue(k + 1, dim=1).values  # +1: the row itself at distance 0
             for rows in features.split(row_batch_size)]
    return torch.cat(radii)


def manifold_coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor,
                      row_batch_size: int) -> float:
    """Share of ``queries`` within ``radii`` of at least one ``support`` row."""
    inside = [(torch.cdist(rows, support) <= radii.unsqueeze(0)).any(1) for rows in queries.split(row_batch_size)]
    return torch.cat(inside).double().mean().item()


class PrecisionRecall(FeatureMetric):
    """Improved precision and recall (k-NN manifolds, k = 3)."""

    Config = PrecisionRecallConfig
    state_reductions: ClassVar[dict[str, Reduction]] = {"generated": "cat", "reference": "cat"}

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Accumulate generated and/or reference images ``(B, 3, H, W)`` in [0, 1]."""
        for side, features in self._sides(generated, reference):
            self._add_state(side, features.pool.float())

    def compute(self) -> dict[str, float]:
        """``{"precision": ..., "recall": ...}``."""
        state = self.state_tensors()
        reference = (self._reference_features(load_reference(self.config.reference)).pool.float()
                     if self.config.reference else state["reference"])
        return self._precision_recall(state["generated"], reference)

    def _precision_recall(self, generated: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        k, rows = self.config.k, self.config.row_batch_size
        precision = manifold_coverage(generated, reference, knn_radii(reference, k, rows), rows)
        recall = manifold_coverage(reference, generated, knn_radii(generated, k, rows), rows)
        return {self.key("precision"): precision, self.key("recall"): recall}
