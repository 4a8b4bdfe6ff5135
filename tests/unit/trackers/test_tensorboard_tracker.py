"""The ``tensorboard`` tracker, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import json

from tracker_doubles import CONFIG
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rae_framework.tracker import TrackerRun


def test_events_hold_scalars_images_text_and_the_final_metrics(session, tmp_path, grid):
    tensorboard = session.build("tracker", "tensorboard")
    assert tensorboard.start(TrackerRun(tmp_path, "unit", CONFIG)) == {}
    for step in range(3):
        tensorboard.log_scalars(step, {"train_denoiser/loss": 1.0 / 2**step})
    tensorboard.log_image("sample/grid", 0, grid)
    (tmp_path / "metrics.json").write_text(json.dumps({"psnr": 9.5}))
    tensorboard.log_metrics({"psnr": 9.5}, tmp_path / "metrics.json")
    tensorboard.finish("finished")

    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0}).Reload()
    assert [(event.step, event.value) for event in events.Scalars("train_denoiser/loss")] == \
        [(0, 1.0), (1, 0.5), (2, 0.25)]  # float32 events: exact for powers of two
    assert [event.value for event in events.Scalars("metrics/psnr")] == [9.5]
    (image,) = events.Images("sample/grid")
    assert (image.width, image.height) == (16, 8)
    assert {"assembly/text_summary", "metrics/text_summary"} <= set(events.Tags()["tensors"])
