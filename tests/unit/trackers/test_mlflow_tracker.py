"""The ``mlflow`` tracker for real, on a local ``file:`` store read back with ``MlflowClient``: params from the
flattened assembly (MLflow's length limits), metric histories with their steps, images, ``metrics.json``, one
run continued across a resume, and a server that does not answer, which fails the start at once."""

from __future__ import annotations

import json
import time

import pytest
from tracker_doubles import CONFIG
from mlflow.tracking import MlflowClient

from rae_framework.tracker import TrackerRun


def tracker(session, **params):
    return session.build("tracker", "mlflow", {"experiment": "rae-test", **params})


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(metric.step, metric.value) for metric in client.get_metric_history(run_id, key)]


def artifacts(client, run_id: str, folder: str | None = None) -> list[str]:
    return sorted(item.path for item in client.list_artifacts(run_id, folder))


def test_a_run_in_the_default_file_store_holds_params_metrics_images_and_metrics_json(session, tmp_path, grid):
    long_value = "x" * 7000
    config = {**CONFIG, "data": {"note": long_value, "k" * 300: 1}}
    mlflow = tracker(session)
    state = mlflow.start(TrackerRun(tmp_path, "unit", config))
    assert state["tracking_uri"] == (tmp_path / "mlruns").resolve().as_uri()
    for step in range(3):
        mlflow.log_scalars(step, {"train_denoiser/loss": 1.0 / (step + 1), "train_denoiser/lr": 1e-4})
    mlflow.log_image("sample/grid", 0, grid)
    (tmp_path / "metrics.json").write_text(json.dumps({"psnr": 9.5, "detail": {"fid": 40.0}}))
    mlflow.log_metrics({"psnr": 9.5, "detail": {"fid": 40.0}}, tmp_path / "metrics.json")
    mlflow.finish("finished")

    client = MlflowClient(tracking_uri=state["tracking_uri"])
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "unit"
    assert run.data.params["seed"] == "0" and run.data.params["stages.sample.per_class"] == "1"
    assert run.data.params["components.denoiser.params.depth"] == "2"
    assert run.data.params["data.note"] == long_value[:6000]  # MLflow's value limit
    assert not [key for key in run.data.params if len(key) > 250]
    assert history(client, run.info.run_id, "train_denoiser/loss") == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert run.data.metrics["psnr"] == 9.5 and run.data.metrics["detail.fid"] == 40.0
    assert artifacts(client, run.info.run_id)[:2] == ["assembly.yaml", "images"]
    assert "metrics.json" in artifacts(client, run.info.run_id)
    assert any(path.endswith(".png") and "sample" in path for path in artifacts(client, run.info.run_id, "images"))


def test_a_resumed_start_continues_the_same_run(session, tmp_path):
    first = tracker(session)
    state = first.start(TrackerRun(tmp_path, "unit", CONFIG))
    first.log_scalars(0, {"train_denoiser/loss": 2.0})
    first.log_scalars(1, {"train_denoiser/loss": 1.5})
    first.finish("killed")
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    assert client.get_run(state["run_id"]).info.status == "KILLED"

    second = tracker(session)
    changed = {**CONFIG, "seed": 1, "stages": {"sample": {"per_class": 1, "batch_size": 4}}}
    assert second.start(TrackerRun(tmp_path, "unit", changed, previous=state)) == state
    assert client.get_run(state["run_id"]).info.status == "RUNNING"
    second.log_scalars(2, {"train_denoiser/loss": 1.25})
    second.finish("finished")

    experiment = client.get_experiment_by_name("rae-test")
    assert [run.info.run_id for run in client.search_runs([experiment.experiment_id])] == [state["run_id"]]
    assert history(client, state["run_id"], "train_denoiser/loss") == [(0, 2.0), (1, 1.5), (2, 1.25)]
    params = client.get_run(state["run_id"]).data.params
    assert params["seed"] == "0" and params["stages.sample.batch_size"] == "4"  # params never change; new keys add


def test_a_server_that_does_not_answer_fails_the_start_within_the_probe_timeout(session, tmp_path):
    mlflow = tracker(session, tracking_uri="http://127.0.0.1:9", probe_timeout=2.0)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match="does not answer"):
        mlflow.start(TrackerRun(tmp_path, "unit", CONFIG))
    assert time.monotonic() - started < 10


def test_the_environment_names_the_store_and_experiment(session, tmp_path, monkeypatch):
    store = (tmp_path / "shared-store").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    mlflow = session.build("tracker", "mlflow")
    state = mlflow.start(TrackerRun(tmp_path / "run", "unit", CONFIG))
    mlflow.finish("finished")
    assert state["tracking_uri"] == store and not (tmp_path / "run" / "mlruns").exists()
    assert MlflowClient(tracking_uri=store).get_experiment_by_name("from-env") is not None
