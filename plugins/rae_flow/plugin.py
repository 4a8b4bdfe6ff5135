"""Registers the flow components (schedule, samplers, guidance) with rae-framework through the public hook."""

from rae_framework import hookimpl

_CONFIGS = "rae_flow.configs"
_COMPONENTS = [
    ("schedule", "shifted-flow", "rae_flow.schedule:ShiftedFlow", "ShiftedFlowConfig",
     "Linear flow x_t = (1-t) x + t eps with the resolution-dependent time shift"),
    ("sampler", "euler", "rae_flow.samplers:Euler", "EulerConfig", "Explicit Euler on the shifted grid"),
    ("sampler", "heun", "rae_flow.samplers:Heun", "HeunConfig", "Heun (torchdiffeq heun2), second order"),
    ("sampler", "dopri5", "rae_flow.samplers:Dopri5", "Dopri5Config", "Adaptive Dormand-Prince 5(4)"),
    ("sampler", "sde", "rae_flow.samplers:SDE", "SDEConfig", "Euler-Maruyama on the marginal-preserving SDE"),
    ("guidance", "none", "rae_flow.guidance:NoGuidance", "NoGuidanceConfig", "Conditional velocity, no guidance"),
    ("guidance", "cfg", "rae_flow.guidance:ClassifierFreeGuidance", "CFGConfig",
     "Classifier-free guidance on a per-sample time interval"),
    ("guidance", "autoguidance", "rae_flow.guidance:Autoguidance", "AutoguidanceConfig",
     "Autoguidance by a weaker conditional guide denoiser"),
]


@hookimpl
def rae_register_components(registrar):
    """The shifted-flow schedule, the euler/heun/dopri5/sde samplers and the none/cfg/autoguidance guidance."""
    for kind, name, factory, config, summary in _COMPONENTS:
        registrar.add(kind, name, factory=factory, config=f"{_CONFIGS}:{config}", summary=summary)
