"""Conversion of the reference's transport/sampler/guidance config sections into our component specs."""

from __future__ import annotations

import math

import pytest

from rae_framework import Session
from rae_framework.errors import ConfigError
from rae_framework.interop.official_configs import load_official_sampling_config, sampling_specs_from_official

# Mirrors configs/training/ImageNet256/DiTDH-XL_DINOv2-B.yaml of bytetriper/RAE (model sections omitted).
REFERENCE = {
    "transport": {"params": {"path_type": "Linear", "prediction": "velocity", "loss_weight": None,
                             "time_dist_type": "uniform"}},
    "sampler": {"mode": "ODE", "params": {"sampling_method": "euler", "num_steps": 50, "atol": 1.0e-6,
                                          "rtol": 1.0e-3, "reverse": False}},
    "guidance": {"method": "cfg", "scale": 1.0, "t_min": 0.0, "t_max": 1.0},
    "misc": {"latent_size": [768, 16, 16], "num_classes": 1000, "time_dist_shift_dim": 196608,
             "time_dist_shift_base": 4096},
}


def _with(section: str, **values):
    config = {key: dict(value) for key, value in REFERENCE.items()}
    config[section] = {**config[section], **values}
    return config


@pytest.fixture(scope="module")
def session():
    return Session()


def test_released_config_maps_to_euler_50_without_guidance(session):
    specs = sampling_specs_from_official(REFERENCE)
    assert specs["sampler"] == {"name": "euler", "params": {"num_steps": 50}}
    assert specs["guidance"] == {"name": "none", "params": {}}
    assert specs["schedule"]["params"]["latent_shape"] == [768, 16, 16]
    for kind, spec in specs.items():  # every spec validates and builds
        component = session.build(kind, spec["name"], spec["params"])
        assert component.config.model_dump(exclude_unset=True).keys() >= spec["params"].keys()
    schedule = session.build("schedule", "shifted-flow", specs["schedule"]["params"])
    assert schedule.shift == pytest.approx(6.9282, abs=1e-4)


def test_methods_and_guidance_variants():
    heun = sampling_specs_from_official(_with("sampler", params={"sampling_method": "heun2", "num_steps": 25}))
    assert heun["sampler"] == {"name": "heun", "params": {"num_steps": 25}}
    dopri = sampling_specs_from_official(_with("sampler", params={"sampling_method": "dopri5", "rtol": 1e-4}))
    assert dopri["sampler"] == {"name": "dopri5", "params": {"num_steps": 50, "atol": 1e-6, "rtol": 1e-4}}
    sde = sampling_specs_from_official(_with("sampler", mode="SDE", params={"num_steps": 250, "diffusion_norm": 0.5}))
    assert sde["sampler"] == {"name": "sde", "params": {"num_steps": 250, "diffusion_norm": 0.5}}
    cfg = sampling_specs_from_official(_with("guidance", scale=3.0, t_max=0.7))
    assert cfg["guidance"] == {"name": "cfg", "params": {"scale": 3.0, "t_min": 0.0, "t_max": 0.7}}
    guide = {"target": "stage2.models.DDT.DiTwDDTHead", "params": {"depth": [2, 1]}}
    auto = sampling_specs_from_official(_with("guidance", method="autoguidance", scale=1.42, guidance_model=guide))
    assert auto["guidance"]["name"] == "autoguidance" and auto["guide_model"] == guide


def test_logit_normal_and_explicit_shift():
    config = _with("transport", params={"time_dist_type": "logit-normal_0.5_1.2"})
    config["misc"] = {"time_dist_shift_dim": 512, "time_dist_shift_base": 64}
    schedule = sampling_specs_from_official(config)["schedule"]["params"]
    assert schedule == {"time_distribution": "logit-normal", "logit_mean": 0.5, "logit_std": 1.2,
                        "shift": math.sqrt(8)}


@pytest.mark.parametrize("section, values, message", [
    ("sampler", {"params": {"sampling_method": "rk4"}}, "rk4"),
    ("sampler", {"mode": "PF"}, "sampler.mode"),
    ("sampler", {"params": {"num_step": 3}}, "sampler.params"),
    ("transport", {"params": {"path_type": "GVP"}}, "Linear"),
    ("transport", {"params": {"time_dist_type": "beta"}}, "time_dist_type"),
    ("guidance", {"method": "autoguidance", "scale": 2.0}, "guidance_model"),
])
def test_unsupported_settings_are_clear_errors(section, values, message):
    with pytest.raises(ConfigError, match=message):
        sampling_specs_from_official(_with(section, **values))


def test_reads_a_yaml_file(tmp_path):
    import yaml

    path = tmp_path / "reference.yaml"
    path.write_text(yaml.safe_dump(_with("guidance", scale=4.0)), encoding="utf-8")
    assert load_official_sampling_config(path)["guidance"]["params"]["scale"] == 4.0
