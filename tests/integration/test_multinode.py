"""The documented 2-node launch, rehearsed on one machine: two torchrun agents (--nnodes 2, one process
each) meet through the c10d rendezvous on 127.0.0.1 (gloo) and train exactly what one process trains."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

WORKER = Path(__file__).parents[1] / "unit" / "engine" / "train_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node(out: Path, rank: int, port: int) -> subprocess.Popen:
    """One 'node': a torchrun agent with one process, as the README's launch with --node_rank ``rank``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(rank), "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
               "--rdzv_id", "rae-multinode-test", str(WORKER), "stage2", str(out), "4", "1"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)


@pytest.mark.slow
def test_two_nodes_rendezvous_and_train_what_one_process_trains(tmp_path):
    port = free_port()
    nodes = [node(tmp_path / "nodes", rank, port) for rank in (0, 1)]
    single = subprocess.Popen([sys.executable, str(WORKER), "stage2", str(tmp_path / "single"), "4", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    for process in (*nodes, single):
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-3000:]
    losses = [json.loads((tmp_path / name / "losses.json").read_text()) for name in ("single", "nodes")]
    torch.testing.assert_close(torch.tensor(losses[1]), torch.tensor(losses[0]), rtol=1e-5, atol=1e-6)
    left, right = (load_file(str(tmp_path / name / "final_model.safetensors")) for name in ("single", "nodes"))
    for key in left:
        torch.testing.assert_close(right[key], left[key], rtol=1e-5, atol=1e-6)
