"""The digits domain metrics: the shipped digits classifier, the digits FID preset, class accuracy, the
evaluate stage's label passing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rae_framework import Session
from rae_framework.data.config import DataConfig
from rae_framework.data.datasets import build_dataset
from rae_framework.engine.distributed import DistContext
from rae_framework.errors import ConfigError, WeightsNotFoundError
from rae_stages.evaluate import evaluate_metric, load_sample_labels

ACCURACY = "class_accuracy@digits-classifier"


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


def _split(split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    dataset = build_dataset(DataConfig(source="digits", image_size=32), split)
    count = len(dataset) if limit is None else limit
    items = [dataset[index] for index in range(count)]
    return torch.stack([image for image, _ in items]), torch.tensor([label for _, label in items])


@pytest.fixture(scope="module")
def holdout() -> tuple[torch.Tensor, torch.Tensor]:
    return _split("holdout")


def test_shipped_classifier_recognises_held_out_digits(session, holdout):
    classifier = session.build("feature_extractor", "digits-classifier")
    features = classifier(holdout[0])
    assert features.pool.shape == (180, 64) and features.logits.shape == (180, 10)
    assert (features.logits.argmax(1) == holdout[1]).double().mean() > 0.97  # trained: 0.994 (README)
    assert not any(parameter.requires_grad for parameter in classifier.parameters())


def test_missing_weights_name_the_command_that_recreates_them(session, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="train_digits_classifier.py"):
        session.build("feature_extractor", "digits-classifier", {"weights": str(tmp_path / "none.safetensors")})


def test_class_accuracy_counts_per_class_and_sees_wrong_labels(session, holdout):
    images, labels = holdout
    metric = session.build("metric", "class-accuracy")
    metric.update(generated=images, labels=labels)
    right = metric.compute()
    metric.reset()
    metric.update(generated=images, labels=(labels + 1) % 10)  # every sample asked for another digit
    wrong = metric.compute()
    assert right[ACCURACY] > 0.97 and wrong[ACCURACY] < 0.05
    counts = torch.bincount(labels, minlength=10).double()
    per_class = torch.tensor([right[f"class_accuracy_{c}@digits-classifier"] for c in range(10)])
    assert right[ACCURACY] == pytest.approx(float((per_class * counts).sum() / counts.sum()))
    assert right["class_accuracy_mean@digits-classifier"] == pytest.approx(float(per_class.mean()))


def test_class_accuracy_merge_across_ranks_equals_single_pass(session, holdout):
    images, labels = holdout
    whole, rank0, rank1 = (session.build("metric", "class-accuracy") for _ in range(3))
    whole.update(generated=images, labels=labels)
    rank0.update(generated=images[:70], labels=labels[:70])
    rank1.update(generated=images[70:], labels=labels[70:])
    rank0.merge(rank1)
    assert rank0.compute() == whole.compute()


def test_class_accuracy_needs_matching_labels(session, holdout):
    metric = session.build("metric", "class-accuracy")
    with pytest.raises(ValueError, match="labels"):
        metric.update(generated=holdout[0][:4])
    with pytest.raises(ValueError, match="4 labels"):
        metric.update(generated=holdout[0][:4], labels=holdout[1][:3])


def test_digits_fid_separates_real_digits_from_noise(session, holdout):
    train_images, _ = _split("train", limit=600)
    fid = session.build("metric", "fid", preset="digits-fid")
    fid.update(generated=train_images, reference=holdout[0])
    real = fid.compute()["gfid@digits-classifier"]
    fid.reset()
    blurred = torch.nn.functional.avg_pool2d(train_images, 5, stride=1, padding=2)  # digits, badly drawn
    fid.update(generated=blurred, reference=holdout[0])
    assert fid.compute()["gfid@digits-classifier"] > 3 * real


def test_evaluate_stage_passes_the_sample_labels(session, holdout, tmp_path):
    images, labels = holdout
    path = tmp_path / "samples.npz"
    np.savez(path, arr_0=(images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), arr_1=labels.numpy())
    loaded = load_sample_labels(path)
    assert torch.equal(loaded, labels)
    samples = torch.from_numpy(np.load(path)["arr_0"]).permute(0, 3, 1, 2).float() / 255
    common = {"samples": samples, "reference": images, "reconstruct": None, "batch_size": 64,
              "context": DistContext()}
    metric = session.build("metric", "class-accuracy")
    values = evaluate_metric("class-accuracy", metric, labels=loaded, **common)
    assert values[ACCURACY] > 0.97
    with pytest.raises(ConfigError, match="labels"):
        evaluate_metric("class-accuracy", metric, labels=None, **common)
    fid = evaluate_metric("digits-fid", session.build("metric", "fid", preset="digits-fid"), labels=loaded, **common)
    assert fid["gfid@digits-classifier"] == pytest.approx(0.0, abs=0.5)  # the samples are the reference digits
