"""Two CPU processes under torchrun (gloo, loopback) train exactly what one process does with the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("train_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}


def launch(out: Path, steps: int, *, processes: int, accumulation: int, stage: str = "stage2") -> subprocess.Popen:
    prefix = [sys.executable]
    if processes > 1:
        prefix += ["-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", str(processes)]
    command = [*prefix, str(WORKER), stage, str(out), str(steps), str(accumulation)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    single = launch(tmp_path / "single", 6, processes=1, accumulation=1)
    ddp = launch(tmp_path / "ddp", 6, processes=2, accumulation=2)  # 2 ranks x 2 micro-batches of 4
    for process in (single, ddp):
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-3000:]
    single_losses = json.loads((tmp_path / "single" / "losses.json").read_text())
    ddp_losses = json.loads((tmp_path / "ddp" / "losses.json").read_text())
    assert len(ddp_losses) == 6
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single_losses), rtol=1e-5, atol=1e-6)
    for name in ("model", "ema"):
        left = load_file(str(tmp_path / "single" / f"final_{name}.safetensors"))
        right = load_file(str(tmp_path / "ddp" / f"final_{name}.safetensors"))
        for key in left:
            torch.testing.assert_close(right[key], left[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_process_decoder_training_matches_single_process(tmp_path):
    """Stage 1 draws latent noise and DiffAugment per global row block and averages the adaptive GAN weight's
    gradients, so 2 ranks (shares of 4 rows, inside one draw block) train the decoder one process trains."""
    single = launch(tmp_path / "single", 4, processes=1, accumulation=1, stage="stage1")
    ddp = launch(tmp_path / "ddp", 4, processes=2, accumulation=1, stage="stage1")
    for process in (single, ddp):
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-3000:]
    for name in ("decoder", "ema", "discriminator"):
        left = load_file(str(tmp_path / "single" / f"final_{name}.safetensors"))
        right = load_file(str(tmp_path / "ddp" / f"final_{name}.safetensors"))
        for key in left:
            torch.testing.assert_close(right[key], left[key], rtol=1e-5, atol=1e-6)
