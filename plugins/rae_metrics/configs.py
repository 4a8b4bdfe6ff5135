"""Torch-free configurations of the evaluation metrics and their feature networks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from rae_framework.config import ComponentConfig


class PSNRConfig(ComponentConfig):
    """Peak signal-to-noise ratio of paired images, averaged over images."""

    data_range: float = Field(1.0, gt=0, description="Value range of the images (1 for [0, 1]).")


class SSIMConfig(ComponentConfig):
    """Gaussian-window SSIM (skimage's gaussian_weights=True, use_sample_covariance=False), mean over images."""

    data_range: float = Field(1.0, gt=0, description="Value range of the images (1 for [0, 1]).")
    sigma: float = Field(1.5, gt=0, description="Standard deviation of the Gaussian window.")
    truncate: float = Field(3.5, gt=0, description="Window radius in sigmas (skimage: 3.5 -> 11x11 at 1.5).")
    k1: float = Field(0.01, gt=0, description="Luminance stabiliser K1.")
    k2: float = Field(0.03, gt=0, description="Contrast stabiliser K2.")


class ComponentRef(ComponentConfig):
    """A registered component a metric builds for itself (its feature network, its perceptual distance)."""

    name: str = Field(..., description="Registered component name (kind given by the field that holds it).")
    preset: str | None = Field(None, description="Optional preset of that component.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters over the preset's.")


def _inception() -> ComponentRef:
    return ComponentRef(name="inception")


class FIDConfig(ComponentConfig):
    """Frechet distance between feature Gaussians of generated samples and a reference set."""

    key: str = Field("fid", pattern=r"^[a-z0-9_]+$", description="Result key, e.g. 'fid' or 'gfid'.")
    features: ComponentRef = Field(default_factory=_inception, description="Feature network (kind "
                                                                           "feature_extractor).")
    reference: str | None = Field(None, description="Reference set: ADM .npz (precomputed statistics and/or "
                                                    "arr_0 images) or an image folder; None = the `reference` "
                                                    "images given to update.")
    reference_statistics: Literal["auto", "precomputed", "images"] = Field(
        "auto", description="Reference Gaussian of an .npz: 'auto' = its precomputed statistics when present and "
                            "the features are the standard Inception's (ADM's read_statistics), else its images; "
                            "'precomputed' = require the statistics; 'images' = always featurise its images.")
    reference_batch_size: int = Field(50, ge=1, description="Batch size when featurising reference images.")


class SFIDConfig(FIDConfig):
    """sFID: the Frechet distance on the Inception's spatial features (reference statistics mu_s / sigma_s)."""

    key: str = Field("sfid", pattern=r"^[a-z0-9_]+$", description="Result key.")


class RFIDConfig(ComponentConfig):
    """rFID: Frechet distance between reconstructions and their originals, both featurised."""

    key: str = Field("rfid", pattern=r"^[a-z0-9_]+$", description="Result key.")
    features: ComponentRef = Field(default_factory=_inception, description="Feature network (kind "
                                                                           "feature_extractor).")
    quantize: Literal["truncate", "round", "none"] = Field(
        "truncate", description="8-bit quantisation of the reconstructions before featurising: 'truncate' as "
                                "the reference's uint8 cast of x * 255, 'round', or 'none'.")


class InceptionScoreConfig(ComponentConfig):
    """Inception Score exp(E KL(p(y|x) || p(y))) of generated images, mean and std over splits."""

    features: ComponentRef = Field(default_factory=_inception, description="Feature network (kind "
                                                                           "feature_extractor, with logits).")
    splits: int = Field(10, ge=1, description="Number of splits (standard: 10).")


class PrecisionRecallConfig(ComponentConfig):
    """Improved precision and recall (Kynkaanniemi et al. 2019) on k-NN feature manifolds."""

    features: ComponentRef = Field(default_factory=_inception, description="Feature network (kind "
                                                                           "feature_extractor).")
    k: int = Field(3, ge=1, description="Neighbourhood size of the manifold estimate (paper: 3).")
    reference: str | None = Field(None, description="Reference images: ADM .npz with arr_0 or an image folder; "
                                                    "None = the `reference` images given to update.")
    reference_batch_size: int = Field(50, ge=1, description="Batch size when featurising reference images.")
    row_batch_size: int = Field(1024, ge=1, description="Rows per pairwise-distance block (memory bound).")


class InceptionConfig(ComponentConfig):
    """The FID Inception-v3 (pytorch-fid / TF 2015-12-05 weights): pool3 2048-d features and 1008 logits."""

    pretrained: bool = Field(True, description="Load the FID weights (from `weights` or the torch hub cache); "
                                               "false = random weights, for tests only.")
    weights: str | None = Field(None, description="Local pt_inception-2015-12-05-6726825d.pth; None = the torch "
                                                  "hub cache (<hub>/checkpoints/).")
    resize_input: bool = Field(True, description="Resize inputs to 299x299 (bilinear), as pytorch-fid does.")


class RandomConvConfig(ComponentConfig):
    """A small fixed random conv net: offline features for tests. Its FID is NOT comparable to Inception FID."""

    feature_dim: int = Field(64, ge=2, description="Feature dimension.")
    num_logits: int = Field(10, ge=2, description="Number of pseudo-class logits (for the Inception Score path).")
    width: int = Field(16, ge=1, description="Channels of the conv layers.")
    seed: int = Field(0, description="Seed of the fixed random weights.")


class LPIPSMetricConfig(ComponentConfig):
    """Mean LPIPS distance of reconstructions to their originals (lower is better)."""

    perceptual: ComponentRef = Field(default_factory=lambda: ComponentRef(name="lpips", preset="lpips-vgg"),
                                     description="Perceptual distance (kind perceptual).")


class DigitsClassifierConfig(ComponentConfig):
    """The quickstart's domain classifier: a small CNN trained on the real digits' training split (features for
    a digits FID, logits for the class accuracy of samples)."""

    pretrained: bool = Field(True, description="Load the trained weights; false = seeded random weights, for "
                                               "tests only.")
    weights: str | None = Field(None, description="A safetensors state dict; None = the weights shipped with "
                                                  "rae_metrics (examples/quickstart/train_digits_classifier.py).")
    input_size: int = Field(32, gt=0, description="Side the images are resized to (bilinear) when they differ.")


def _digits_classifier() -> ComponentRef:
    return ComponentRef(name="digits-classifier")


class ClassAccuracyConfig(ComponentConfig):
    """Share of samples that a classifier (a feature extractor with logits) assigns to the label they were
    generated for, overall and per class."""

    features: ComponentRef = Field(default_factory=_digits_classifier,
                                   description="Classifier (kind feature_extractor, with logits).")
