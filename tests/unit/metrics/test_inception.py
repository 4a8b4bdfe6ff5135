"""The FID Inception: pytorch-fid's pool-branch variants, the offline weight error, feature shapes."""

from __future__ import annotations

import pytest
import torch
from quick import quickly
import torch.nn.functional as F
from torchvision.models import inception

from rae_framework.errors import WeightsNotFoundError
from rae_metrics.configs import InceptionConfig
from rae_metrics.inception import InceptionFeatures, _avg_pool_without_padding, _max_pool, _pool_branch_replaced


@pytest.mark.parametrize("pool", [_avg_pool_without_padding, _max_pool])
def test_pool_branch_is_replaced_and_other_branches_kept(pool):
    torch.manual_seed(0)
    block = _pool_branch_replaced(inception.InceptionA, pool)(8, pool_features=4).eval()
    x = torch.rand(1, 8, 6, 6)
    branches = block._forward(x)
    reference = inception.InceptionA._forward(block, x)
    assert torch.allclose(branches[-1], block.branch_pool(pool(x)))
    assert not torch.allclose(branches[-1], block.branch_pool(F.avg_pool2d(x, 3, 1, 1)))  # border differs
    for ours, theirs in zip(branches[:-1], reference[:-1]):
        assert torch.equal(ours, theirs)


def test_missing_fid_weights_fail_fast_naming_file_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = r"pt_inception-2015-12-05-6726825d\.pth.*" + str(tmp_path)
    with quickly(), pytest.raises(WeightsNotFoundError, match=weights):
        InceptionFeatures(InceptionConfig())


@pytest.mark.slow  # writes and reads a 95 MB state dict
def test_weights_file_round_trip_and_standard_flag(tmp_path):
    extractor = InceptionFeatures(InceptionConfig(pretrained=False))
    assert not extractor.standard
    torch.save(extractor.net.state_dict(), tmp_path / "fid.pth")
    loaded = InceptionFeatures(InceptionConfig(weights=str(tmp_path / "fid.pth")))
    assert loaded.standard
    for name, value in extractor.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], value), name


@pytest.mark.slow
def test_features_and_logits_shapes():
    extractor = InceptionFeatures(InceptionConfig(pretrained=False, resize_input=False))
    features = extractor(torch.rand(2, 3, 75, 75))  # the smallest input the graph takes
    assert features.pool.shape == (2, 2048) and features.logits.shape == (2, 1008)
    assert torch.isfinite(features.pool).all()


@pytest.mark.slow
def test_matches_pytorch_fid_inception_with_the_same_weights(monkeypatch):
    """Where pytorch-fid is installed: our graph, resize and scaling equal its InceptionV3 bit for bit."""
    pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")
    torch.manual_seed(0)
    ours = InceptionFeatures(InceptionConfig(pretrained=False))
    with torch.no_grad():
        for module in ours.net.modules():  # non-trivial statistics so that activations are not all ~0
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
    monkeypatch.setattr(pytorch_fid_inception, "load_state_dict_from_url", lambda *_, **__: ours.net.state_dict())
    theirs = pytorch_fid_inception.InceptionV3([3], resize_input=True, normalize_input=True).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images).pool, theirs(images)[0].flatten(1), rtol=1e-5, atol=1e-5)


def test_spatial_features_are_mixed_6d_branch1x1_first_7_channels_in_nhwc_order():
    """ADM's sFID layer "mixed_6/conv" (evaluator.py:L24, L599: ``spatial[..., :7]`` of an NHWC map)."""
    extractor = InceptionFeatures(InceptionConfig(pretrained=False, resize_input=False))
    captured = []
    handle = extractor.net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: captured.append(out))
    with torch.no_grad():
        features = extractor(torch.rand(2, 3, 75, 75, generator=torch.Generator().manual_seed(0)))
    handle.remove()
    block = captured[-1]  # (2, 192, 3, 3): the branch as Mixed_6d computes it
    expected = block[:, :7].permute(0, 2, 3, 1).reshape(2, -1)  # (2, 3 * 3 * 7)
    assert features.spatial.shape == (2, 63)
    torch.testing.assert_close(features.spatial, expected, rtol=0, atol=0)
    assert InceptionFeatures.spatial_dim == 2023 and extractor.spatial_dim == 0  # 17 x 17 x 7 only at 299 px
