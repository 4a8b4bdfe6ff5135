"""PSNR and SSIM against scikit-image, plus the mergeable-state protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from rae_metrics.configs import PSNRConfig, SSIMConfig
from rae_metrics.psnr import PSNR
from rae_metrics.ssim import SSIM


def _pairs(seed: int, batch: int = 3, size: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    reference = torch.rand(batch, 3, size, size + 5, generator=generator)
    noisy = (reference + 0.1 * torch.randn(reference.shape, generator=generator)).clamp(0, 1)
    return noisy, reference


def _skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return structural_similarity(a.permute(1, 2, 0).numpy().astype(np.float64),
                                 b.permute(1, 2, 0).numpy().astype(np.float64), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0, channel_axis=2)


def test_psnr_matches_skimage_mean_over_images():
    generated, reference = _pairs(0)
    metric = PSNR(PSNRConfig())
    metric.update(generated[:2], reference[:2])
    metric.update(generated[2:], reference[2:])
    expected = np.mean([peak_signal_noise_ratio(r.numpy(), g.numpy(), data_range=1.0)
                        for g, r in zip(generated, reference)])
    assert metric.compute()["psnr"] == pytest.approx(expected, abs=1e-5)


def test_ssim_matches_skimage_gaussian_window():
    generated, reference = _pairs(1)
    metric = SSIM(SSIMConfig())
    metric.update(generated, reference)
    expected = np.mean([_skimage_ssim(g, r) for g, r in zip(generated, reference)])
    assert metric.compute()["ssim"] == pytest.approx(expected, abs=1e-6)


def test_ssim_of_identical_images_is_one():
    _, reference = _pairs(2)
    metric = SSIM(SSIMConfig())
    metric.update(reference, reference)
    assert metric.compute()["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_merge_and_state_tensors_equal_single_pass():
    generated, reference = _pairs(3, batch=4)
    whole, first, second = (PSNR(PSNRConfig()) for _ in range(3))
    whole.update(generated, reference)
    first.update(generated[:1], reference[:1])
    second.update(generated[1:], reference[1:])
    first.merge(second)
    assert first.compute()["psnr"] == pytest.approx(whole.compute()["psnr"], abs=1e-9)
    reduced = {name: a + b for (name, a), b in zip(first.state_tensors().items(), whole.state_tensors().values())}
    first.load_state_tensors(reduced)  # what an all_reduce(sum) of two ranks would hand back
    assert first.compute()["psnr"] == pytest.approx(whole.compute()["psnr"], abs=1e-9)


def test_paired_metrics_reject_missing_or_mismatched_inputs():
    generated, reference = _pairs(4)
    metric = PSNR(PSNRConfig())
    with pytest.raises(ValueError, match="pairs"):
        metric.update(generated, None)
    with pytest.raises(ValueError, match="equal shape"):
        metric.update(generated, reference[:1])
    with pytest.raises(ValueError, match="no images"):
        metric.compute()


def test_lpips_metric_is_the_mean_perceptual_distance_and_labels_random_backbones():
    from rae_framework import Session

    session = Session()
    metric = session.build("metric", "lpips", preset="lpips-tiny")
    generated, reference = _pairs(5, batch=4, size=32)
    metric.update(generated[:3], reference[:3])
    metric.update(generated[3:], reference[3:])
    expected = metric.distance(generated, reference).mean().item()
    assert metric.compute() == {"lpips@lpips-tiny": pytest.approx(expected, rel=1e-5)}
    metric.reset()
    metric.update(reference, reference)
    assert metric.compute()["lpips@lpips-tiny"] == pytest.approx(0.0, abs=1e-6)
