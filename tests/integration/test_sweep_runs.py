"""``rae sweep`` end to end on a tiny assembly: shared stages adopted by hard link, resume, CSV, table, and the
domain metrics (digits FID, class accuracy with the samples' labels) through the evaluate stage."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest

from rae_framework.cli import main

from tiny_run import tiny_assembly

ASSEMBLY = tiny_assembly("sweep-tiny", """\
  train_decoder: {steps: 2, batch_size: 8, checkpoint_every: 1, sample_every: 2, eval_images: 8}
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 2, batch_size: 16, checkpoint_every: 1}
  sample: {per_class: 2, batch_size: 10}
  evaluate: {metrics: [psnr, digits-fid, class-accuracy]}
""")
GRID = ["--grid", "components.guidance.params.scale=1.0,4.0"]  # only the sample stage (and evaluate) differ
POINTS = ("scale=1.0__seed=0", "scale=4.0__seed=0")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "tiny.yaml").write_text(ASSEMBLY)
    args = ["sweep", str(folder / "tiny.yaml"), *GRID, "--out", str(folder / "out"),
            "--metrics", "class_accuracy,gfid,psnr"]
    return folder, args, main(args)


def _points(folder) -> list[dict]:
    return [json.loads((folder / "out" / name / "sweep_point.json").read_text()) for name in POINTS]


@pytest.mark.slow
def test_second_point_adopts_the_shared_stages_by_hard_link(sweep):
    folder, _, code = sweep
    assert code == 0
    first, second = _points(folder)
    assert first["ran"] == ["evaluate", "latent_stats", "sample", "train_decoder", "train_denoiser"]
    assert second["reused"] == ["latent_stats", "train_decoder", "train_denoiser"]
    assert second["ran"] == ["evaluate", "sample"]
    decoder = [folder / "out" / name / "checkpoints" / "decoder_ema.safetensors" for name in POINTS]
    assert os.path.samefile(*decoder)
    denoiser = [folder / "out" / name / "checkpoints" / "denoiser_ema.safetensors" for name in POINTS]
    assert os.path.samefile(*denoiser)
    samples = [folder / "out" / name / "samples" / "samples.npz" for name in POINTS]
    assert not os.path.samefile(*samples)  # the guidance scale differs


@pytest.mark.slow
def test_metrics_reach_the_csv_and_the_table(sweep, capsys):
    folder, _, _ = sweep
    with (folder / "out" / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["scale"] for row in rows] == ["1.0", "4.0"]
    for row in rows:
        assert 0.0 <= float(row["class_accuracy@digits-classifier"]) <= 1.0
        assert float(row["gfid@digits-classifier"]) > 0 and float(row["psnr"]) > 0
        assert row["class_accuracy_9@digits-classifier"] != ""  # per class, from the samples' labels
    assert (folder / "out" / "sweep.png").is_file()


@pytest.mark.slow
def test_rerun_skips_finished_points_and_resumes_an_interrupted_one(sweep):
    folder, args, _ = sweep
    before = _points(folder)
    shutil.rmtree(folder / "out" / POINTS[0] / "stages" / "evaluate")  # as if killed before evaluate finished
    (folder / "out" / POINTS[0] / "metrics.json").unlink()
    assert main(args) == 0
    after = _points(folder)
    assert after[0]["wall_s"] > before[0]["wall_s"]  # evaluate ran again (no earlier point to adopt from)
    assert after[1]["wall_s"] == before[1]["wall_s"]  # nothing ran for the finished point
    assert (folder / "out" / POINTS[0] / "metrics.json").is_file()
