"""``--device`` names a device this machine has, or the run stops before any work with a ConfigError
(it was an AssertionError from deep inside torch: "Torch not compiled with CUDA enabled")."""

import pytest
import torch

from rae_framework.errors import ConfigError
from rae_framework.pipeline import device_of


def test_cpu_is_always_there():
    assert device_of("cpu") == torch.device("cpu")


def test_no_name_means_the_best_device_here(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_of(None) == torch.device("cpu")


def test_cuda_without_a_cuda_device_names_the_torch_build(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device 'cuda': no CUDA device here \(torch .*CUDA build"):
        device_of("cuda")


def test_a_cuda_index_past_the_last_device_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_of("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match=r"device 'cuda:2': this machine has 2 CUDA device\(s\), numbered from 0"):
        device_of("cuda:2")


def test_mps_where_there_is_none(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="device 'mps': no MPS device here"):
        device_of("mps")


def test_a_name_torch_does_not_know():
    with pytest.raises(ConfigError, match="not a torch device"):
        device_of("gpu0")
