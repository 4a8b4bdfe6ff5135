"""Distribution metrics on one feature pipeline: FID (gFID), sFID, rFID, Inception Score, precision/recall.

All of them build their feature network from a :class:`~rae_metrics.configs.ComponentRef` (kind
``feature_extractor``, default the FID Inception), featurise each ``update`` batch under ``no_grad`` and keep
mergeable state (:mod:`rae_metrics.state`): FID keeps sufficient statistics (count, sum, sum of outer
products; ``"sum"`` across ranks), IS and precision/recall keep the rows (``"cat"``). Values from a
non-standard extractor are reported under keys suffixed ``@<extractor>``, e.g. ``fid@random-conv``.

* FID = ``|mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` (Heusel et al.); the trace of the root
  comes from symmetric eigenvalues (equal to pytorch-fid's ``scipy.linalg.sqrtm`` up to round-off). gFID
  (``fid``): samples vs a reference ``.npz``/folder (``reference`` param; an ADM ``.npz``'s precomputed
  ``mu``/``sigma`` are used as ADM's evaluator does) or reference images passed to ``update``. sFID
  (``sfid``): the same on ADM's spatial features (``mu_s``/``sigma_s``). rFID (``rfid``, paired):
  ``update(generated=reconstructions, reference=originals)``.
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
from rae_metrics.configs import FIDConfig, InceptionScoreConfig, PrecisionRecallConfig, RFIDConfig, SFIDConfig
from rae_metrics.features import (FeatureExtractor, Features, build_component, extractor_label, featurize,
                                  featurize_batches)
from rae_metrics.paired import require_pair
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


def moments(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count ``()``, sum ``(D,)`` and sum of outer products ``(D, D)`` of feature rows ``(B, D)`` (float64)."""
    rows = rows.double()
    return torch.tensor(float(rows.shape[0]), dtype=torch.float64), rows.sum(0), rows.T @ rows


class FeatureMetric(MergeableState, Metric):
    """Shared pipeline: lazily built feature network (moved to the device of the images it is given),
    featurised updates (states kept on the CPU), the reference set."""

    paired: ClassVar[bool] = False  # generated samples (vs a reference set); rFID overrides

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

    @property
    def wants_reference_images(self) -> bool:
        """Metrics with a ``reference`` setting (FID, sFID, precision/recall) compare with reference images fed
        by the caller unless the setting names a reference set of their own; the Inception Score has none."""
        return "reference" in type(self.config).model_fields and self.config.reference is None

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
        if not self.wants_reference_images:
            reference = None
        for side, images in (("generated", generated), ("reference", reference)):
            if images is not None:
                yield side, self._features(images)

    def _reference_batches(self, reference: ReferenceSet) -> Iterator[Features]:
        """The reference set's features, one batch at a time (never all its images at once)."""
        if not reference.has_images:
            raise ConfigError(f"{reference.source} holds only Inception statistics; {type(self).__name__} with "
                              f"'{self.config.features.name}' features needs reference images")
        return featurize_batches(self.extractor, reference.batches(self.config.reference_batch_size))


class FID(FeatureMetric):
    """Frechet Inception Distance of generated samples against a reference set (``key``: fid, gfid).

    The reference Gaussian is, in this order: the reference ``.npz``'s precomputed statistics (``mu`` /
    ``sigma``) when ``reference_statistics`` allows it, as ADM's ``read_statistics`` does
    (guided-diffusion evaluations/evaluator.py:L164-172); else streamed features of its images; else (no
    ``reference`` set) the reference images passed to ``update``.
    """

    Config = FIDConfig
    feature: ClassVar[str] = "pool"  # the Features field the distance is measured on
    statistic_keys: ClassVar[tuple[str, str]] = ("mu", "sigma")  # where an ADM .npz stores them
    state_reductions: ClassVar[dict[str, Reduction]] = {
        "generated_count": "sum", "generated_sum": "sum", "generated_outer": "sum",
        "reference_count": "sum", "reference_sum": "sum", "reference_outer": "sum"}

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Accumulate generated and/or reference images ``(B, 3, H, W)`` in [0, 1]."""
        for side, features in self._sides(generated, reference):
            self._accumulate(side, features.field(self.feature))

    def _accumulate(self, side: str, rows: torch.Tensor) -> None:
        for name, value in zip(("count", "sum", "outer"), moments(rows)):
            self._add_state(f"{side}_{name}", value)

    def _feature_dim(self) -> int:
        """D of the features: as seen in an update, else as the extractor declares it."""
        seen = self._state["generated_sum"] or self._state["reference_sum"]
        if seen:
            return seen[0].shape[0]
        return self.extractor.feature_dim if self.feature == "pool" else self.extractor.spatial_dim

    def _empty_state(self, name: str) -> torch.Tensor:
        dim = self._feature_dim()
        shape = {"count": (), "sum": (dim,), "outer": (dim, dim)}[name.partition("_")[2]]
        return torch.zeros(shape, dtype=torch.float64)

    def _side(self, side: str) -> tuple[np.ndarray, np.ndarray]:
        state = self.state_tensors()
        return gaussian_from_sums(state[f"{side}_count"], state[f"{side}_sum"], state[f"{side}_outer"])

    def _precomputed(self, reference: ReferenceSet) -> tuple[np.ndarray, np.ndarray] | None:
        """The reference's stored statistics where the config's ``reference_statistics`` takes them."""
        mode = self.config.reference_statistics
        if mode == "images" or (mode == "auto" and not self.extractor.standard):
            return None  # statistics of the TF Inception do not describe other features
        stored = reference.statistics(*self.statistic_keys)
        if stored is None and mode == "precomputed":
            raise ConfigError(f"{reference.source} has no precomputed '{self.statistic_keys[0]}' / "
                              f"'{self.statistic_keys[1]}' (reference_statistics: precomputed)")
        return stored

    def _reference_gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        if self.config.reference is None:
            return self._side("reference")
        reference = load_reference(self.config.reference)
        stored = self._precomputed(reference)
        if stored is not None:
            return stored
        count, total, outer = 0.0, 0.0, 0.0
        for features in self._reference_batches(reference):
            batch_count, batch_total, batch_outer = moments(features.field(self.feature))
            count, total, outer = count + batch_count, total + batch_total, outer + batch_outer
        return gaussian_from_sums(torch.as_tensor(count), total, outer)

    def compute(self) -> dict[str, float]:
        """``{key: FID}`` between the generated and the reference Gaussians."""
        mu_g, sigma_g = self._side("generated")
        mu_r, sigma_r = self._reference_gaussian()
        return {self.key(self.config.key): frechet_distance(mu_g, sigma_g, mu_r, sigma_r)}


class SpatialFID(FID):
    """sFID (Nash et al. 2021): the Frechet distance on ADM's spatial features (7 channels of the Inception's
    ``mixed_6/conv``), reference statistics ``mu_s`` / ``sigma_s`` of an ADM ``.npz`` (evaluator.py:L57,
    L164-172)."""

    Config = SFIDConfig
    feature = "spatial"
    statistic_keys = ("mu_s", "sigma_s")


class ReconstructionFID(FID):
    """rFID: FID of the autoencoder's reconstructions (``generated``) against their originals
    (``reference``), both streamed through the feature network (a paired metric: fed image by image with
    the originals). Reconstructions are quantised to 8 bits first, as the reference's evaluation does
    (``recon.clamp(0, 1).mul(255)`` cast to uint8: truncation; reference: src/eval/__init__.py:L288-289)."""

    Config = RFIDConfig
    paired = True

    @property
    def wants_reference_images(self) -> bool:
        """The originals always come with the reconstructions."""
        return True

    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Accumulate reconstructions and their originals ``(B, 3, H, W)`` in [0, 1]."""
        require_pair(generated, reference, "rfid")
        super().update(quantize_images(generated, self.config.quantize), reference)

    def _reference_gaussian(self) -> tuple[np.ndarray, np.ndarray]:
        return self._side("reference")


def quantize_images(images: torch.Tensor, mode: str) -> torch.Tensor:
    """``[0, 1]`` images as their 8-bit values would read back: ``truncate`` (uint8 cast of ``x * 255``),
    ``round`` (to the nearest level) or ``none``."""
    if mode == "none":
        return images
    scaled = images.clamp(0, 1) * 255
    return (scaled.floor() if mode == "truncate" else scaled.round()) / 255


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
        reference = (torch.cat([features.pool.float() for features in
                                self._reference_batches(load_reference(self.config.reference))])
                     if self.config.reference else state["reference"])
        return self._precision_recall(state["generated"], reference)

    def _precision_recall(self, generated: torch.Tensor, reference: torch.Tensor) -> dict[str, float]:
        k, rows = self.config.k, self.config.row_batch_size
        precision = manifold_coverage(generated, reference, knn_radii(reference, k, rows), rows)
        recall = manifold_coverage(reference, generated, knn_radii(generated, k, rows), rows)
        return {self.key("precision"): precision, self.key("recall"): recall}
