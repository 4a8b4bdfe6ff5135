"""The Frechet distance and Gaussian statistics against closed forms and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scipy import linalg

from rae_metrics.fid import frechet_distance, gaussian_from_sums, trace_sqrt_product


def _spd(seed: int, dim: int = 6) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(dim, dim))
    return a @ a.T + dim * np.eye(dim)


def test_identical_gaussians_have_zero_distance():
    mu, sigma = np.arange(6.0), _spd(0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_shifted_gaussians_give_squared_mean_difference():
    sigma = _spd(1)
    mu1, mu2 = np.zeros(6), np.array([1.0, -2.0, 0.5, 0.0, 3.0, 1.0])
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-8)


def test_diagonal_covariances_closed_form():
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 16.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_singular_covariances_give_the_closed_form():
    sigma = np.diag([1.0, 0.0, 0.0])
    assert frechet_distance(np.zeros(3), sigma, np.ones(3), sigma) == pytest.approx(3.0, abs=1e-9)


def test_trace_of_the_root_matches_scipy_sqrtm():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 12)), rng.normal(size=(40, 12)) @ rng.normal(size=(12, 12))
    sigma1, sigma2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.trace(linalg.sqrtm(sigma1 @ sigma2)).real
    assert trace_sqrt_product(sigma1, sigma2) == pytest.approx(expected, rel=1e-9)


def test_mismatched_dimensions_are_an_error():
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_gaussian_from_sums_matches_numpy():
    x = torch.randn(50, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mu, sigma = gaussian_from_sums(torch.tensor(50.0), x.sum(0), x.T @ x)
    np.testing.assert_allclose(mu, x.numpy().mean(0), atol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.numpy(), rowvar=False), atol=1e-12)
