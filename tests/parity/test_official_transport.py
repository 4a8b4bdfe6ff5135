"""Parity of the shifted-flow schedule, the loss and the Euler/Heun samplers with the reference's transport.pt.

Sizes, shifts and step counts are read from the fixture file (a second set with other sizes exists).
Tolerances (fixture README): time grids and training times 3e-7, loss 1e-5, sampler trajectories 1e-4.
"""

from __future__ import annotations

import pytest
import torch

from rae_flow.configs import (CFGConfig, EulerConfig, HeunConfig, NoGuidanceConfig, ShiftedFlowConfig)
from rae_flow.guidance import ClassifierFreeGuidance, NoGuidance
from rae_flow.samplers import Euler, Heun
from rae_flow.schedule import ShiftedFlow, times_from_uniform

TIME_TOL = 3e-7


def _schedule_config(entry: dict, **extra) -> ShiftedFlowConfig:
    """Config for a ``train_time_samples`` entry: 'uniform' or 'logit-normal_<mu>_<sigma>' and its shift."""
    kind, *moments = entry["time_dist_type"].split("_")
    params = {"time_distribution": kind, "shift": entry["shift"], **extra}
    if moments:
        params.update(logit_mean=float(moments[0]), logit_std=float(moments[1]))
    return ShiftedFlowConfig(**params)


def _grid_schedule(spec: dict) -> ShiftedFlow:
    return ShiftedFlow(ShiftedFlowConfig(latent_shape=tuple(spec["latent_shape"]), shift_base=spec["shift_base"]))


@pytest.fixture(scope="module")
def transport(official):
    return official("transport.pt")


@pytest.fixture(scope="module")
def ddt_model(official):
    from rae_framework.interop import load_official

    ddt = official("ddt_head.pt")
    return load_official("DiTwDDTHead", ddt["config"], ddt["state_dict"]).eval()


def test_time_grids_match_every_combo(transport):
    for combo in transport["time_grids"]["combos"]:
        schedule = _grid_schedule(combo)
        assert schedule.shift == pytest.approx(combo["shift"], rel=1e-12)
        grid = schedule.sampling_grid(combo["num_steps"])
        assert grid.dtype == torch.float32 and grid.shape == combo["grid"].shape
        torch.testing.assert_close(grid, combo["grid"], atol=TIME_TOL, rtol=0)
        assert len(grid) - 1 == combo["num_model_evals_euler"]


def test_first_grid_point_is_the_reference_s(transport):
    """Where the reference's float32 grid starts at 1.0000001, ours does too (no clamp: sampling parity,
    tests/parity/test_official_sampling.py)."""
    for combo in transport["time_grids"]["combos"]:
        grid = _grid_schedule(combo).sampling_grid(combo["num_steps"])
        assert bool(grid[0] > 1.0) == bool(combo["grid"][0] > 1.0) == combo["first_point_exceeds_1"]
        assert grid[0].item() == combo["grid"][0].item()
        assert torch.all(grid[1:] < grid[:-1])


def test_train_times_from_fixed_uniform_draws(transport):
    for entry in transport["train_time_samples"]["samples"]:
        t = times_from_uniform(entry["u"], _schedule_config(entry))
        torch.testing.assert_close(t, entry["t"], atol=TIME_TOL, rtol=0)


def test_seeded_train_times_follow_the_reference_draw_order(transport):
    for entry in (e for e in transport["train_time_samples"]["samples"] if e["kind"] == "seeded"):
        schedule = ShiftedFlow(_schedule_config(entry))
        torch.manual_seed(entry["seed"])
        noise = torch.randn(entry["batch"], *entry["latent_shape"])
        t = schedule.sample_time(entry["batch"])
        torch.testing.assert_close(noise, entry["noise"], atol=0, rtol=0)
        torch.testing.assert_close(t, entry["t"], atol=TIME_TOL, rtol=0)


def test_accurate_icdf_differs_only_in_the_lower_tail(transport):
    """The ndtri option moves t by at most ~6e-5 (at u = 1e-6) and agrees elsewhere (README section 5)."""
    for entry in transport["train_time_samples"]["samples"]:
        accurate = times_from_uniform(entry["u"], _schedule_config(entry, accurate_icdf=True))
        assert (accurate - entry["t"]).abs().max().item() < 1e-4
        tail = entry["u"] < 1e-3
        torch.testing.assert_close(accurate[~tail], entry["t"][~tail], atol=2e-6, rtol=0)


def test_loss_matches_with_the_reference_noise_and_times(transport, ddt_model):
    loss = transport["loss"]
    with torch.no_grad():
        schedule = ShiftedFlow(_schedule_config(loss))
        per_sample = schedule.loss_at(ddt_model, loss["x1_data"], loss["y"], loss["noise"], loss["t"])
    torch.testing.assert_close(per_sample, loss["loss_per_sample"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(per_sample.mean(), loss["loss_mean"], atol=1e-5, rtol=1e-5)


def test_training_loss_redraws_the_reference_noise_and_times(transport, ddt_model):
    loss = transport["loss"]
    schedule = ShiftedFlow(_schedule_config(loss))
    torch.manual_seed(loss["seed"])
    with torch.no_grad():
        per_sample = schedule.training_loss(ddt_model, loss["x1_data"], loss["y"])
    torch.testing.assert_close(per_sample, loss["loss_per_sample"], atol=1e-5, rtol=1e-5)


def _guidance(run: dict):
    if run["guidance"] is None:
        return NoGuidance(NoGuidanceConfig())
    low, high = run["guidance"]["cfg_interval"]
    return ClassifierFreeGuidance(CFGConfig(scale=run["guidance"]["cfg_scale"], t_min=low, t_max=high))


def _sampler(method: str, num_steps: int):
    return Euler(EulerConfig(num_steps=num_steps)) if method == "euler" else Heun(HeunConfig(num_steps=num_steps))


def test_sampler_trajectories(transport, ddt_model):
    """Every stored run (euler / heun2, with and without CFG): states at all grid points and the eval times."""
    spec = transport["sampling"]
    assert len(spec["runs"]) > 0
    for run in spec["runs"]:
        _check_run(run, spec, ddt_model)


def _check_run(run: dict, spec: dict, model) -> None:
    batch = run["trajectory"].shape[1]
    labels, noise = run["y"][:batch], run["init_noise"][:batch]  # CFG runs store the doubled batch
    field, seen = _guidance(run).velocity(model, labels), []

    def velocity(x, t):
        seen.append(t[0].clone())
        return field(x, t)

    result = _sampler(run["method"], spec["num_steps"]).sample(velocity, noise, _grid_schedule(spec),
                                                               return_trajectory=True)
    torch.testing.assert_close(result.trajectory, run["trajectory"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(result.samples, run["final"], atol=1e-4, rtol=1e-4)
    eval_times = run["model_eval_times"]
    eval_times = eval_times[:, 0] if eval_times.dim() == 2 else eval_times
    assert result.num_function_evals == len(seen) == len(eval_times)
    torch.testing.assert_close(torch.stack(seen), eval_times, atol=TIME_TOL, rtol=0)  # bit-equal here, incl. Heun's ulp
    if run["guidance"] is not None:  # per-evaluation guidance = the inclusive interval test on t
        low, high = run["guidance"]["cfg_interval"]
        assert [low <= t <= high for t in eval_times.tolist()] == list(run["guided_evals"])
    if "final_full_batch" in run:
        torch.testing.assert_close(run["final_full_batch"][batch:], run["final"], atol=0, rtol=0)
