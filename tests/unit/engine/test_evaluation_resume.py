"""Evaluation that saves its metric states: a preempted run resumes from them, and the values equal an
uninterrupted in-memory evaluation (exactly for concatenated states, to float64 rounding for sums)."""

from __future__ import annotations

import signal

import pytest
import torch

from rae_framework import Session
from rae_framework.engine import DistContext, PreemptionNotice, RunLogger
from rae_framework.errors import PreemptedError, RAEError
from rae_stages.evaluate import evaluate_metric
from rae_stages.metric_progress import MetricProgress, check_cover


class Rows:
    """Images in a tensor, read by rows; arms ``notice`` (as SIGTERM's handler would) after ``stop_after`` reads."""

    def __init__(self, images: torch.Tensor, notice: PreemptionNotice | None = None, stop_after: int = 0) -> None:
        self.images, self.notice, self.stop_after, self.reads = images, notice, stop_after, 0

    def __len__(self) -> int:
        return len(self.images)

    def read(self, start: int, stop: int) -> torch.Tensor:
        self.reads += 1
        if self.notice is not None and self.reads == self.stop_after:
            self.notice.received = signal.SIGTERM
        return self.images[start:stop]


@pytest.fixture(scope="module")
def session() -> Session:
    return Session()


def images(seed: int, count: int) -> torch.Tensor:
    return torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def evaluate(metric, samples: Rows, reference: Rows, progress: MetricProgress | None = None) -> dict[str, float]:
    return evaluate_metric("metric", metric, samples=samples, reference=reference, reconstruct=None, batch_size=4,
                           context=DistContext(), progress=progress)


@pytest.mark.parametrize(("preset", "exact"), [("inception-score-tiny", True), ("precision-recall-tiny", True),
                                               ("fid-tiny", False)])
def test_a_preempted_evaluation_resumes_from_its_saved_states(tmp_path, session, preset, exact):
    component = session.presets.get("metric", preset).component
    build = lambda: session.build("metric", component, preset=preset)  # noqa: E731
    generated, held_out = images(0, 22), images(1, 13)  # 6 batches of samples (+ 4 of references for FID, P/R)
    clean = evaluate(build(), Rows(generated), Rows(held_out))

    logger = RunLogger(tmp_path / "log", console=False, tensorboard=False)
    notice = PreemptionNotice()
    progress = MetricProgress(tmp_path / "saved", save_every=2, notice=notice, logger=logger)
    with pytest.raises(PreemptedError, match=r"preempted \(SIGTERM\) in metric 'metric' at batch 3 of") as stop:
        evaluate(build(), Rows(generated, notice, stop_after=3), Rows(held_out), progress)
    assert stop.value.signal == signal.SIGTERM  # SIGTERM: `rae submit` leaves the requeue to SLURM
    assert sorted(path.name for path in progress.folder.iterdir()) == ["part_000000_000002.safetensors",
                                                                       "part_000002_000003.safetensors"]
    samples = Rows(generated)
    resumed = evaluate(build(), samples, Rows(held_out), MetricProgress(tmp_path / "saved", 2, logger=logger))
    assert samples.reads == 3  # batches 3, 4, 5 only
    # float64 sums added in another order; FID of 22 samples (a singular covariance) magnifies that to ~1e-8
    assert resumed == clean if exact else resumed == pytest.approx(clean, rel=1e-6)
    assert sorted(path.name for path in progress.folder.iterdir()) == ["result.json"]
    samples = Rows(generated)
    assert evaluate(build(), samples, Rows(held_out), MetricProgress(tmp_path / "saved", 2)) == resumed
    assert samples.reads == 0  # the finished metric is not computed again
    logger.close()
    assert "evaluate: metric: resuming at batch 3 of" in (tmp_path / "log" / "log.txt").read_text()


def test_saved_states_that_do_not_fit_together_are_an_error(tmp_path):
    with pytest.raises(RAEError, match="do not fit together at unit 2"):
        check_cover([(0, 2, "a"), (3, 5, "b")], 5, tmp_path)
    with pytest.raises(RAEError, match="cover 2 of 5 units"):
        check_cover([(0, 2, "a")], 5, tmp_path)
    assert check_cover([(2, 5, "b"), (0, 2, "a")], 5, tmp_path) == [(0, 2, "a"), (2, 5, "b")]


def test_a_metric_over_no_images_fails_as_the_in_memory_evaluation_does(tmp_path, session):
    common = {"samples": None, "reference": Rows(images(0, 0)), "reconstruct": lambda x: x, "batch_size": 4,
              "context": DistContext()}
    for progress in (None, MetricProgress(tmp_path, 2)):  # no parts to merge: the metric's own empty state
        with pytest.raises(ValueError, match="psnr: no images were added"):
            evaluate_metric("psnr", session.build("metric", "psnr", preset="psnr-tiny"), **common, progress=progress)
