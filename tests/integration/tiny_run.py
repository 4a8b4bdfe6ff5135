"""The tiny assembly the end-to-end tests share: the real tiny presets on the bundled digits, with each test's
own stages (and, where it needs them, extra components)."""

from __future__ import annotations

COMPONENTS = """\
  encoder: {name: mae, preset: mae-tiny}
  decoder: {name: vit, preset: vit-tiny}
  denoiser: {name: dit-dh, preset: dit-dh-tiny, params: {in_channels: 32, input_size: 2}}
  schedule: {name: shifted-flow, params: {time_distribution: logit-normal}}
  sampler: {name: euler, preset: euler-tiny}
  guidance: {name: cfg, preset: cfg-tiny}
"""


def tiny_assembly(name: str, stages: str, extra_components: str = "") -> str:
    """Assembly YAML named ``name``: :data:`COMPONENTS` (+ ``extra_components`` lines), decoder noise 0.5, digits
    at 16 px with 5 % held out, and ``stages`` (indented ``stage: {...}`` lines)."""
    return (f"name: {name}\nseed: 0\ncomponents:\n{COMPONENTS}{extra_components}"
            "autoencoder: {noise_tau: 0.5}\ndata: {source: digits, image_size: 16, holdout_fraction: 0.05}\n"
            f"stages:\n{stages}")
