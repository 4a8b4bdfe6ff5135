"""LPIPS: per-sample distances, frozen weights, the offline backbone error."""

from __future__ import annotations

import pytest
import torch
from quick import quickly

from rae_framework import Session
from rae_framework.errors import WeightsNotFoundError
from rae_gan.configs import LPIPSConfig
from rae_gan.lpips_loss import LPIPS


def test_distance_per_sample_zero_on_identical_and_differentiable():
    torch.manual_seed(0)
    loss = Session().build("perceptual", "lpips", preset="lpips-tiny")
    targets = torch.rand(2, 3, 32, 32)
    images = (targets + 0.2 * torch.randn_like(targets)).clamp(0, 1).requires_grad_(True)
    distance = loss(images, targets)
    assert distance.shape == (2,)
    assert torch.allclose(loss(targets, targets), torch.zeros(2), atol=1e-6)
    assert (distance > 0).all()
    distance.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(parameter.requires_grad for parameter in loss.parameters())
    loss.train()
    assert not loss.model.training


def test_missing_backbone_weights_fail_fast_naming_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with quickly(), pytest.raises(WeightsNotFoundError, match=r"vgg16-397923af\.pth.*" + str(tmp_path)):
        LPIPS(LPIPSConfig(net="vgg", pretrained_backbone=True))
