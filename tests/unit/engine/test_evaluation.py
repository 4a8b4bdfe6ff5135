"""Evaluation helpers: metric families, reference sets, metrics.json merging, the metric loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rae_framework.engine.distributed import DistContext
from rae_framework.errors import ConfigError
from rae_stages.evaluate import evaluate_metric, load_reference_images, write_metrics


class Recorder:
    """Records what the evaluation loop feeds it."""

    def __init__(self, key=None, paired=False, reference=None, has_reference=True):
        settings = {"key": key, **({"reference": reference} if has_reference else {})}
        self.config = type("Config", (), settings)()
        self.paired = paired
        self.reset()

    def reset(self):
        self.generated, self.reference = [], []

    def update(self, generated=None, reference=None):
        if generated is not None:
            self.generated.append(generated)
        if reference is not None:
            self.reference.append(reference)

    def compute(self):
        return {"n_generated": sum(len(b) for b in self.generated), "n_reference": sum(len(b) for b in self.reference)}


def test_the_metrics_own_declaration_decides_its_family_whatever_its_name():
    samples, reference = torch.rand(4, 3, 4, 4), torch.rand(3, 3, 4, 4)
    generation = evaluate_metric("psnr", Recorder(paired=False), samples=samples, reference=reference,
                                 reconstruct=lambda x: x, batch_size=2, context=DistContext())
    assert generation == {"n_generated": 4, "n_reference": 3}
    paired = evaluate_metric("gfid", Recorder(paired=True), samples=None, reference=reference,
                             reconstruct=lambda x: x, batch_size=2, context=DistContext())
    assert paired == {"n_generated": 3, "n_reference": 3}


def test_generation_metric_gets_all_samples_and_references():
    samples, reference = torch.rand(7, 3, 4, 4), torch.rand(5, 3, 4, 4)
    values = evaluate_metric("gfid", Recorder(key="gfid"), samples=samples, reference=reference, reconstruct=None,
                             batch_size=3, context=DistContext())
    assert values == {"n_generated": 7, "n_reference": 5}
    for metric in (Recorder(key="gfid", reference="ref.npz"), Recorder(has_reference=False)):  # own set / IS
        values = evaluate_metric("gfid", metric, samples=samples, reference=reference, reconstruct=None,
                                 batch_size=3, context=DistContext())
        assert values == {"n_generated": 7, "n_reference": 0}
    with pytest.raises(ConfigError, match="sample stage"):
        evaluate_metric("gfid", Recorder(key="gfid"), samples=None, reference=reference, reconstruct=None,
                        batch_size=3, context=DistContext())


def test_reconstruction_metric_pairs_reconstructions_with_originals():
    metric, reference = Recorder(paired=True), torch.rand(5, 3, 4, 4)
    evaluate_metric("psnr", metric, samples=None, reference=reference, reconstruct=lambda x: 1 - x, batch_size=2,
                    context=DistContext())
    assert torch.equal(torch.cat(metric.reference), reference)
    assert torch.equal(torch.cat(metric.generated), 1 - reference)


def test_reference_sets_from_npz_and_folder(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "ref.npz", arr_0=images)
    loaded = load_reference_images(tmp_path / "ref.npz", 8)
    assert loaded.shape == (3, 3, 8, 8) and torch.equal((loaded * 255).round().byte().permute(0, 2, 3, 1),
                                                        torch.from_numpy(images))
    (tmp_path / "flat").mkdir()
    for index in range(2):
        Image.fromarray(images[index]).resize((16, 12)).save(tmp_path / "flat" / f"{index}.png")
    assert load_reference_images(tmp_path / "flat", 8).shape == (2, 3, 8, 8)
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2))
    with pytest.raises(ConfigError, match="arr_0"):
        load_reference_images(tmp_path / "stats.npz", 8)


def test_metrics_json_is_merged(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics(path, {"psnr": 20.0})
    write_metrics(path, {"fid": 3.5, "psnr": 21.0})
    assert json.loads(path.read_text()) == {"fid": 3.5, "psnr": 21.0}
