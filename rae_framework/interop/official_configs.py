"""Import of the reference's stage-2 transport / sampler / guidance configuration (bytetriper/RAE YAML layout).

The reference's configs (e.g. ``configs/training/ImageNet256/DiTDH-XL_DINOv2-B.yaml``) hold, besides the
models, the sections::

    transport: {params: {path_type: Linear, prediction: velocity, loss_weight: null, time_dist_type: uniform}}
    sampler:   {mode: ODE, params: {sampling_method: euler, num_steps: 50, atol: 1.0e-6, rtol: 1.0e-3, reverse: false}}
    guidance:  {method: cfg, scale: 1.0, t_min: 0.0, t_max: 1.0}      # autoguidance adds guidance_model
    misc:      {latent_size: [768, 16, 16], time_dist_shift_dim: 196608, time_dist_shift_base: 4096, ...}

:func:`sampling_specs_from_official` turns them into this framework's component specs (``name`` + ``params``)
for the kinds ``schedule``, ``sampler`` and ``guidance``. Mapping notes:

* ODE ``euler`` -> ``euler``, ``heun2`` -> ``heun``, ``dopri5`` -> ``dopri5`` (atol/rtol kept for dopri5 only;
  torchdiffeq ignores them on fixed grids). SDE ``Euler`` -> ``sde`` with ``diffusion_norm``; the reference's
  ``diffusion_form`` / ``last_step`` have no counterpart (its SBDM SDE is NaN under this time convention) and
  our SDE uses ``g(t)^2 = 2 w t`` with a deterministic last step.
* ``loss_weight`` has no effect for velocity prediction in the reference, and none here.
* The shift is ``sqrt(time_dist_shift_dim / time_dist_shift_base)`` (reference defaults 196608 and 4096); it is
  expressed through ``latent_shape`` when ``latent_size`` has that many elements, else as an explicit ``shift``.
* Guidance with ``scale <= 1`` is the plain conditional forward in the reference: ``none`` here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rae_framework.errors import ConfigError

__all__ = ["load_official_sampling_config", "sampling_specs_from_official"]

ODE_METHODS = {"euler": "euler", "heun2": "heun", "dopri5": "dopri5"}
SDE_METHODS = {"euler": "sde"}
DEFAULT_SHIFT_DIM = 768 * 16 * 16  # the reference's defaults (sample.py)
DEFAULT_SHIFT_BASE = 4096

Spec = dict[str, Any]


def _section(config: Mapping[str, Any], key: str, allowed: set[str], where: str = "") -> Mapping[str, Any]:
    """``config[key]`` (empty if absent); unknown keys are an error naming the dotted path ``where``."""
    where = where or key
    section = config.get(key) or {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"reference config '{where}' must be a mapping, got {type(section).__name__}")
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"reference config '{where}' has unsupported keys {sorted(unknown)}; "
                          f"known: {sorted(allowed)}")
    return section


def _time_distribution(name: str) -> dict[str, Any]:
    """'uniform' or 'logit-normal_<mean>_<std>' -> schedule params."""
    kind, *moments = name.split("_")
    if kind == "uniform" and not moments:
        return {"time_distribution": "uniform"}
    if kind == "logit-normal" and len(moments) == 2:
        return {"time_distribution": "logit-normal", "logit_mean": float(moments[0]), "logit_std": float(moments[1])}
    raise ConfigError(f"transport.params.time_dist_type: unsupported '{name}' "
                      "(expected 'uniform' or 'logit-normal_<mean>_<std>')")


def _schedule_spec(config: Mapping[str, Any]) -> Spec:
    params = _section(_section(config, "transport", {"params"}), "params",
                      {"path_type", "prediction", "loss_weight", "time_dist_type", "train_eps", "sample_eps"},
                      "transport.params")
    if params.get("path_type", "Linear") != "Linear" or params.get("prediction", "velocity") != "velocity":
        raise ConfigError("transport.params: only path_type 'Linear' with prediction 'velocity' is supported, got "
                          f"{params.get('path_type')!r} / {params.get('prediction')!r}")
    misc = config.get("misc") or {}
    shift_dim = misc.get("time_dist_shift_dim", DEFAULT_SHIFT_DIM)
    shift_base = misc.get("time_dist_shift_base", DEFAULT_SHIFT_BASE)
    latent = misc.get("latent_size")
    if latent is not None and math.prod(latent) == shift_dim:
        shift_params: dict[str, Any] = {"latent_shape": list(latent), "shift_base": float(shift_base)}
    else:
        shift_params = {"shift": math.sqrt(shift_dim / shift_base)}
    return {"name": "shifted-flow",
            "params": {**_time_distribution(params.get("time_dist_type", "uniform")), **shift_params}}


def _sampler_spec(config: Mapping[str, Any]) -> Spec:
    sampler = _section(config, "sampler", {"mode", "params"})
    mode = sampler.get("mode", "ODE")
    if mode == "ODE":
        return _ode_spec(_section(sampler, "params", {"sampling_method", "num_steps", "atol", "rtol", "reverse"},
                                  "sampler.params"))
    if mode == "SDE":
        return _sde_spec(_section(sampler, "params", {"sampling_method", "diffusion_form", "diffusion_norm",
                                                      "last_step", "last_step_size", "num_steps"}, "sampler.params"))
    raise ConfigError(f"sampler.mode: expected 'ODE' or 'SDE', got {mode!r}")


def _ode_spec(params: Mapping[str, Any]) -> Spec:
    method = params.get("sampling_method", "dopri5")
    if method not in ODE_METHODS:
        raise ConfigError(f"sampler.params.sampling_method: unsupported ODE method {method!r}; "
                          f"supported: {sorted(ODE_METHODS)}")
    if params.get("reverse", False):
        raise ConfigError("sampler.params.reverse: data-to-noise integration is not supported")
    spec_params: dict[str, Any] = {"num_steps": params.get("num_steps", 50)}
    if method == "dopri5":
        spec_params.update(atol=params.get("atol", 1e-6), rtol=params.get("rtol", 1e-3))
    return {"name": ODE_METHODS[method], "params": spec_params}


def _sde_spec(params: Mapping[str, Any]) -> Spec:
    method = str(params.get("sampling_method", "Euler")).lower()
    if method not in SDE_METHODS:
        raise ConfigError(f"sampler.params.sampling_method: unsupported SDE method {method!r}; supported: Euler")
    return {"name": SDE_METHODS[method],
            "params": {"num_steps": params.get("num_steps", 250), "diffusion_norm": params.get("diffusion_norm", 1.0)}}


def _guidance_spec(config: Mapping[str, Any]) -> Spec:
    guidance = _section(config, "guidance", {"method", "scale", "t_min", "t_max", "guidance_model"})
    scale, method = float(guidance.get("scale", 1.0)), guidance.get("method", "cfg")
    if method not in ("cfg", "autoguidance"):
        raise ConfigError(f"guidance.method: expected 'cfg' or 'autoguidance', got {method!r}")
    if scale <= 1.0:
        return {"name": "none", "params": {}}
    if method == "autoguidance" and guidance.get("guidance_model") is None:
        raise ConfigError("guidance.guidance_model: autoguidance needs the guide model's config")
    return {"name": method, "params": {"scale": scale, "t_min": float(guidance.get("t_min", 0.0)),
                                       "t_max": float(guidance.get("t_max", 1.0))}}


def sampling_specs_from_official(config: Mapping[str, Any]) -> dict[str, Spec]:
    """Reference config dict -> ``{"schedule": spec, "sampler": spec, "guidance": spec}``, each spec
    ``{"name": ..., "params": {...}}``; with autoguidance also ``"guide_model"``: the reference's
    ``{target, params}`` of the guide denoiser (build it with :func:`rae_framework.interop.load_official`)."""
    specs = {"schedule": _schedule_spec(config), "sampler": _sampler_spec(config),
             "guidance": _guidance_spec(config)}
    if specs["guidance"]["name"] == "autoguidance":
        specs["guide_model"] = dict(config["guidance"]["guidance_model"])
    return specs


def load_official_sampling_config(path: str | Path) -> dict[str, Spec]:
    """Read a reference YAML config file and convert it with :func:`sampling_specs_from_official`."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, Mapping):
        raise ConfigError(f"{path}: a reference config is a mapping of sections")
    return sampling_specs_from_official(document)
