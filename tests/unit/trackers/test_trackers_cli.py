"""``rae run`` with all three trackers, offline, preempted (SIGTERM, exit 75) and rerun: the rerun continues the
same W&B run id and the same MLflow run, whose metric history covers both halves once. And a run whose trackers
cannot start (MLflow server down, W&B not logged in) warns once per tracker and finishes. Under torchrun only
rank 0 logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from wandb_offline import offline_runs

STEPS = 40
COMPONENTS = """\
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
  denoiser: {name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  schedule: {name: shifted-flow}
  sampler: {name: euler, preset: euler-tiny}
"""


def assembly(folder, name: str, stages: str, trackers: str) -> str:
    """The tiny components on a folder of 30 random 16 px images (10 classes): a run costs its imports only."""
    rng = np.random.default_rng(0)
    for label in range(10):
        (folder / "images" / f"c{label}").mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                folder / "images" / f"c{label}" / f"{index}.png")
    return (f"name: {name}\nseed: 0\ncomponents:\n{COMPONENTS}"
            f"data: {{source: folder, root: '{folder / 'images'}', image_size: 16}}\n"
            f"stages:\n{stages}trackers: {trackers}\n")


def environment(home) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("WANDB_", "MLFLOW_"))}
    return {**env, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HOME": str(home), "WANDB_MODE": "offline",
            "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": str(home / "wandb")}


def command(path, out) -> list[str]:
    return [sys.executable, "-m", "rae_framework", "run", str(path), "--out", str(out)]


def preempted_run(path, out, env) -> str:
    """Run until train_denoiser logged step 5, send SIGTERM, expect exit 75; returns stderr."""
    process = subprocess.Popen(command(path, out), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=env)
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.startswith("train_denoiser step 5/"):
            process.send_signal(signal.SIGTERM)
            break
    stderr = "".join(seen) + process.communicate(timeout=300)[1]
    assert process.returncode == 75, stderr[-3000:]
    return stderr


@pytest.mark.slow
def test_a_preempted_run_continues_its_wandb_and_mlflow_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # to read the run's file: store back here
    path, out, env = tmp_path / "tiny.yaml", tmp_path / "run", environment(tmp_path / "home")
    path.write_text(assembly(tmp_path, "trackers-cli", f"""\
  latent_stats: {{batch_size: 256}}
  train_denoiser: {{steps: {STEPS}, batch_size: 8, checkpoint_every: 1000, log_every: 1}}
  sample: {{per_class: 1, batch_size: 10}}
  evaluate: {{metrics: [psnr]}}
""", "[tensorboard, {name: wandb, params: {project: rae-cli}}, mlflow]"))
    stderr = preempted_run(path, out, env)
    assert "WARNING tracker" not in stderr and "trackers: tensorboard, wandb, mlflow" in stderr
    first = json.loads((out / "trackers.json").read_text())
    client = MlflowClient(tracking_uri=first["mlflow"]["tracking_uri"])
    assert client.get_run(first["mlflow"]["run_id"]).info.status == "KILLED"

    resumed = subprocess.run(command(path, out), capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0 and "WARNING tracker" not in resumed.stderr, resumed.stderr[-3000:]
    assert json.loads((out / "trackers.json").read_text()) == first

    runs = offline_runs(out)
    assert [run.run_id for run in runs] == [first["wandb"]["id"]] * 2 and [r.exit_code for r in runs] == [75, 0]
    wandb_steps = [row["train_denoiser/step"] for run in runs for row in run.history if "train_denoiser/loss" in row]
    assert wandb_steps == list(range(1, STEPS + 1))
    assert runs[0].config["name"] == "trackers-cli" and runs[1].summary["psnr"] > 0 and runs[1].images()

    run = client.get_run(first["mlflow"]["run_id"])
    assert run.info.status == "FINISHED" and run.data.params["stages.train_denoiser.steps"] == str(STEPS)
    mlflow_steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "train_denoiser/loss")]
    assert mlflow_steps == list(range(1, STEPS + 1))
    assert run.data.metrics["psnr"] == json.loads((out / "metrics.json").read_text())["psnr"]
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert any("sample" in item.path for item in client.list_artifacts(run.info.run_id, "images"))

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    assert [event.step for event in events.Scalars("train_denoiser/loss")] == list(range(1, STEPS + 1))


@pytest.mark.slow
def test_trackers_that_cannot_start_warn_once_and_the_run_finishes(tmp_path):
    path, out, env = tmp_path / "tiny.yaml", tmp_path / "run", environment(tmp_path / "home")
    env.pop("WANDB_MODE")
    path.write_text(assembly(tmp_path, "trackers-down", """\
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 3, batch_size: 8, log_every: 1}
""", "[{name: mlflow, params: {tracking_uri: 'http://127.0.0.1:9', probe_timeout: 2}}, {name: wandb}]"))
    result = subprocess.run(command(path, out), capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING tracker")]
    assert len(warnings) == 2, result.stderr[-3000:]
    assert warnings[0].startswith("WARNING tracker 'mlflow' failed to start (ConnectionError: MLflow server "
                                  "http://127.0.0.1:9 does not answer")
    assert warnings[1].startswith("WARNING tracker 'wandb' failed to start (RuntimeError: not logged in to W&B")
    assert "train_denoiser step 3/3" in result.stderr and (out / "checkpoints" / "denoiser_ema.safetensors").is_file()
    assert json.loads((out / "trackers.json").read_text()) == {}


@pytest.mark.slow
def test_under_torchrun_only_rank_0_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    path, out, env = tmp_path / "tiny.yaml", tmp_path / "run", environment(tmp_path / "home")
    path.write_text(assembly(tmp_path, "trackers-ddp", """\
  latent_stats: {batch_size: 256}
  train_denoiser: {steps: 3, batch_size: 8, log_every: 1}
""", "[wandb, mlflow]"))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
               "2", "-m", "rae_framework", "run", str(path), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, env={**env, "GLOO_SOCKET_IFNAME": "lo"},
                          timeout=600)
    assert done.returncode == 0 and "WARNING tracker" not in done.stderr, done.stderr[-3000:]
    (run,) = offline_runs(out)  # one W&B run
    assert [row["train_denoiser/step"] for row in run.history if "train_denoiser/loss" in row] == [1, 2, 3]
    state = json.loads((out / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=state["tracking_uri"])
    (only,) = client.search_runs([client.get_experiment_by_name("rae-framework").experiment_id])
    assert only.info.run_id == state["run_id"]
    assert [metric.step for metric in client.get_metric_history(only.info.run_id, "train_denoiser/loss")] == [1, 2, 3]
