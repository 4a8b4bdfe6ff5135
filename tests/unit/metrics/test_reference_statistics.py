"""gFID/sFID against an ADM reference batch's precomputed statistics, streamed reference images, rFID.

ADM's evaluator takes ``mu``/``sigma`` (FID) and ``mu_s``/``sigma_s`` (sFID) from the reference ``.npz`` when
present (guided-diffusion evaluations/evaluator.py:L164-172); IS and precision/recall use its images. The
npz here is generated in ADM's layout; the Inception has random weights (``inception-tiny``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rae_framework import Session
from rae_framework.errors import ConfigError
from rae_metrics.fid import frechet_distance, quantize_images
from rae_metrics.reference_batch import load_reference

INCEPTION_TINY = {"name": "inception", "preset": "inception-tiny"}
TINY = {"name": "random-conv", "preset": "random-conv-tiny"}


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


def _uint8_images(seed: int, count: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)  # (N, H, W, 3)


def _as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)


def _gaussian(rows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    rows = rows.double().numpy()
    return rows.mean(0), np.cov(rows, rowvar=False)


def _adm_npz(path, session, features: dict, size: int):
    """An ADM-style reference batch: uint8 images plus statistics of *other* (made-up) Gaussians, so that a
    result equal to the stored statistics' distance proves they were used, not the images."""
    extractor = session.build("feature_extractor", features["name"], preset=features["preset"])
    with torch.no_grad():
        probe = extractor(torch.zeros(1, 3, size, size))
    rng = np.random.default_rng(0)
    stats = {}
    for suffix, dim in (("", probe.pool.shape[1]), ("_s", probe.spatial.shape[1])):
        factor = rng.standard_normal((dim, 8))
        stats[f"mu{suffix}"] = rng.standard_normal(dim)
        stats[f"sigma{suffix}"] = factor @ factor.T + np.eye(dim)
    np.savez(path, arr_0=_uint8_images(1, 7, size), **stats)
    return stats


# The random Inception at 75 px (its smallest input): sFID's Mixed_6d features are 3 x 3 x 7 = 63-d; its
# 2048-d pool3 costs minutes of eigendecompositions on 2 cores, so FID runs on the random conv net.
@pytest.mark.parametrize(("name", "features", "size", "feature", "suffix"),
                         [("fid", TINY, 16, "pool", ""), ("sfid", INCEPTION_TINY, 75, "spatial", "_s")])
def test_generation_fid_uses_the_npz_statistics(session, tmp_path, name, features, size, feature, suffix):
    path = tmp_path / "VIRTUAL_tiny.npz"
    stats = _adm_npz(path, session, features, size)
    generated = _as_tensor(_uint8_images(2, 6, size))
    metric = session.build("metric", name, {"features": features, "reference": str(path),
                                            "reference_statistics": "precomputed"})
    metric.update(generated=generated[:4])
    metric.update(generated=generated[4:])
    with torch.no_grad():
        rows = getattr(metric.extractor(generated), feature)
    mu, sigma = _gaussian(rows)
    expected = frechet_distance(mu, sigma, stats[f"mu{suffix}"], stats[f"sigma{suffix}"])
    (value,) = metric.compute().values()
    assert value == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("mode", ["images", "auto"])  # auto: random features are not the TF Inception's
def test_images_mode_and_non_standard_features_use_the_npz_images(session, tmp_path, mode):
    path = tmp_path / "VIRTUAL_tiny.npz"
    _adm_npz(path, session, TINY, 8)
    generated = _as_tensor(_uint8_images(3, 6, 8))
    reference = _as_tensor(np.load(path)["arr_0"])
    direct = session.build("metric", "sfid", {"features": TINY})
    direct.update(generated=generated, reference=reference)
    metric = session.build("metric", "sfid", {"features": TINY, "reference": str(path),
                                              "reference_statistics": mode, "reference_batch_size": 3})
    metric.update(generated=generated)
    assert metric.compute() == pytest.approx(direct.compute(), rel=1e-6)
    assert not metric.wants_reference_images and direct.wants_reference_images


def test_precomputed_statistics_missing_is_an_error(session, tmp_path):
    np.savez(tmp_path / "images_only.npz", arr_0=_uint8_images(4, 5, 16))
    metric = session.build("metric", "fid", {"features": TINY, "reference": str(tmp_path / "images_only.npz"),
                                             "reference_statistics": "precomputed"})
    metric.update(generated=_as_tensor(_uint8_images(5, 5, 16)))
    with pytest.raises(ConfigError, match="no precomputed 'mu'"):
        metric.compute()


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_images_stream_in_batches_equal_to_the_array(tmp_path, save):
    images = _uint8_images(6, 11, 8)
    save(tmp_path / "ref.npz", arr_0=images, mu=np.zeros(3), sigma=np.eye(3))
    reference = load_reference(str(tmp_path / "ref.npz"))
    batches = list(reference.batches(4))
    assert [len(batch) for batch in batches] == [4, 4, 3] and len(reference) == 11
    torch.testing.assert_close(torch.cat(batches), _as_tensor(images), rtol=0, atol=0)
    mu, sigma = reference.statistics("mu", "sigma")
    assert mu.shape == (3,) and sigma.shape == (3, 3) and reference.statistics("mu_s", "sigma_s") is None


def test_rfid_is_paired_and_truncates_reconstructions_to_8_bits(session):
    originals = _as_tensor(_uint8_images(7, 12, 16))
    reconstructions = originals + 0.9 / 255  # truncation maps every value back to its original level
    metric = session.build("metric", "rfid", preset="rfid-tiny")
    assert metric.paired and metric.wants_reference_images
    metric.update(generated=reconstructions, reference=originals)
    assert metric.compute()["rfid@random-conv-tiny"] == pytest.approx(0.0, abs=1e-9)
    unquantized = session.build("metric", "rfid", {"quantize": "none"}, preset="rfid-tiny")
    unquantized.update(generated=reconstructions, reference=originals)
    assert unquantized.compute()["rfid@random-conv-tiny"] > 1e-6
    with pytest.raises(ValueError, match="pairs"):
        metric.update(generated=reconstructions)


def test_quantisation_modes():
    images = torch.tensor([0.0, 0.5 / 255, 1.6 / 255, 1.2])
    assert quantize_images(images, "truncate").mul(255).tolist() == pytest.approx([0, 0, 1, 255])
    assert quantize_images(images, "round").mul(255).tolist() == pytest.approx([0, 0, 2, 255])
    assert torch.equal(quantize_images(images, "none"), images)


def test_generation_metrics_are_not_paired(session):
    for name in ("fid-tiny", "sfid-tiny", "inception-score-tiny", "precision-recall-tiny"):
        preset = session.presets.get("metric", name)
        metric = session.build("metric", preset.component, preset=name)
        assert metric.paired is False and metric.wants_reference_images == (name != "inception-score-tiny"), name
    for name in ("psnr", "ssim", "rfid-tiny"):
        preset = session.presets.get("metric", name)
        assert session.build("metric", preset.component, preset=name).paired is True, name
