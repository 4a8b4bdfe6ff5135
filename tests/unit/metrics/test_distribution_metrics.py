"""FID / Inception Score / precision-recall on the offline random-conv features, reference sets, state merge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rae_framework import Session
from rae_framework.errors import ConfigError
from rae_metrics.fid import inception_score, knn_radii, manifold_coverage
from rae_metrics.reference_batch import load_reference

TINY_FEATURES = {"name": "random-conv", "preset": "random-conv-tiny"}


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


def _images(seed: int, count: int = 24, size: int = 16) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _uint8(images: torch.Tensor) -> np.ndarray:
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)


def test_fid_is_zero_on_identical_sets_and_positive_on_different_ones(session):
    fid = session.build("metric", "fid", preset="fid-tiny")
    images = _images(0)
    fid.update(images, images)
    assert fid.compute()["fid@random-conv-tiny"] == pytest.approx(0.0, abs=1e-6)
    fid.reset()
    fid.update(_images(1), _images(2) * 0.5)
    assert fid.compute()["fid@random-conv-tiny"] > 0.01


def test_fid_merge_across_ranks_equals_single_pass(session):
    whole, rank0, rank1 = (session.build("metric", "fid", preset="fid-tiny") for _ in range(3))
    generated, reference = _images(3), _images(4)
    whole.update(generated, reference)
    rank0.update(generated[:10], reference[:5])
    rank1.update(generated[10:], reference[5:])
    rank0.merge(rank1)
    assert rank0.compute() == pytest.approx(whole.compute(), rel=1e-6)  # float32 features per batch


def test_fid_reference_npz_images_and_folder_equal_passing_images(session, tmp_path):
    generated, reference = _images(5), _images(6)
    reference = torch.from_numpy(_uint8(reference)).permute(0, 3, 1, 2).float() / 255  # exact uint8 round trip
    np.savez(tmp_path / "ref.npz", arr_0=_uint8(reference))
    folder = tmp_path / "folder"
    folder.mkdir()
    for index, array in enumerate(_uint8(reference)):
        Image.fromarray(array).save(folder / f"{index:03d}.png")
    direct = session.build("metric", "fid", preset="fid-tiny")
    direct.update(generated, reference)
    expected = direct.compute()["fid@random-conv-tiny"]
    for path in (tmp_path / "ref.npz", folder):
        metric = session.build("metric", "fid", {"reference": str(path), "reference_batch_size": 7}, preset="fid-tiny")
        metric.update(generated, torch.zeros_like(generated))  # replaced by the configured reference set
        assert metric.compute()["fid@random-conv-tiny"] == pytest.approx(expected, rel=1e-6)


def test_inception_statistics_are_refused_for_non_standard_features(session, tmp_path):
    np.savez(tmp_path / "stats.npz", mu=np.zeros(16), sigma=np.eye(16))
    metric = session.build("metric", "fid", {"reference": str(tmp_path / "stats.npz")}, preset="fid-tiny")
    metric.update(_images(7))
    with pytest.raises(ConfigError, match="only Inception statistics"):
        metric.compute()


def test_reference_loader_errors(tmp_path):
    np.savez(tmp_path / "bad.npz", other=np.zeros(3))
    with pytest.raises(ConfigError, match="arr_0"):
        load_reference(str(tmp_path / "bad.npz"))
    with pytest.raises(ConfigError, match="neither"):
        load_reference(str(tmp_path / "missing"))
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    Image.new("RGB", (9, 8)).save(folder / "b.png")
    with pytest.raises(ConfigError, match="differ in size"):
        list(load_reference(str(folder)).batches(2))


def test_inception_score_closed_forms():
    assert inception_score(torch.zeros(20, 5), splits=2) == pytest.approx((1.0, 0.0), abs=1e-9)
    confident = torch.full((20, 4), -1e4)
    confident[torch.arange(20), torch.arange(20) % 4] = 0.0  # each class equally often, fully confident
    mean, std = inception_score(confident, splits=5)
    assert mean == pytest.approx(4.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)


def test_inception_score_metric_runs_and_labels_its_key(session):
    metric = session.build("metric", "inception-score", preset="inception-score-tiny")
    metric.update(_images(8))
    result = metric.compute()
    assert set(result) == {"inception_score@random-conv-tiny", "inception_score_std@random-conv-tiny"}
    assert result["inception_score@random-conv-tiny"] >= 1.0


def _brute_force_coverage(queries: np.ndarray, support: np.ndarray, k: int) -> float:
    support_distances = np.linalg.norm(support[:, None] - support[None], axis=-1)
    radii = np.sort(support_distances, axis=1)[:, k]
    distances = np.linalg.norm(queries[:, None] - support[None], axis=-1)
    return float((distances <= radii[None]).any(1).mean())


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(40, 3)), rng.normal(0.7, 1.3, size=(30, 3))
    real_t, fake_t = torch.from_numpy(real), torch.from_numpy(fake)
    precision = manifold_coverage(fake_t, real_t, knn_radii(real_t, 3, 7), 7)
    recall = manifold_coverage(real_t, fake_t, knn_radii(fake_t, 3, 7), 7)
    assert precision == pytest.approx(_brute_force_coverage(fake, real, 3))
    assert recall == pytest.approx(_brute_force_coverage(real, fake, 3))
    assert 0 < precision < 1 and 0 < recall < 1


def test_precision_recall_metric_identical_and_disjoint(session):
    metric = session.build("metric", "precision-recall", preset="precision-recall-tiny")
    images = _images(9)
    metric.update(images, images)
    result = metric.compute()
    assert result == {"precision@random-conv-tiny": 1.0, "recall@random-conv-tiny": 1.0}
    metric.reset()
    metric.update(torch.zeros(12, 3, 16, 16), torch.ones(12, 3, 16, 16) * torch.rand(12, 1, 1, 1) * 0.1 + 0.9)
    result = metric.compute()
    assert result["precision@random-conv-tiny"] == 0.0 and result["recall@random-conv-tiny"] == 0.0


def test_fid_state_has_fixed_shapes_before_any_update(session):
    """A rank without images must still all-reduce tensors of the same shapes as the others."""
    empty, used = (session.build("metric", "fid", preset="fid-tiny") for _ in range(2))
    used.update(_images(10), _images(11))
    shapes = {name: value.shape for name, value in used.state_tensors().items()}
    assert {name: value.shape for name, value in empty.state_tensors().items()} == shapes
    summed = {k: a + b for (k, a), b in zip(used.state_tensors().items(), empty.state_tensors().values())}
    empty.load_state_tensors(summed)
    assert empty.compute() == pytest.approx(used.compute(), rel=1e-12)
