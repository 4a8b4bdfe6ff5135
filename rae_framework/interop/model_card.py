"""The Hub model card (``README.md``) of an exported run: YAML metadata, the assembly, metrics, samples, usage.

The metadata goes through ``huggingface_hub.ModelCardData`` (so the front matter is what the Hub parses);
``pipeline_tag`` is ``unconditional-image-generation``, the Hub's image-generation task without a text
prompt (it has no class-conditional one).
"""

from __future__ import annotations

import json
from typing import Any

PIPELINE_TAG = "unconditional-image-generation"
BASE_TAGS = ("rae", "representation-autoencoder", "diffusion", "flow-matching", "class-conditional",
             "image-generation")


def card_metadata(encoder: str, denoiser: str, license_id: str) -> str:
    """The YAML front matter (without the ``---`` fences)."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(library_name="rae-framework", license=license_id, pipeline_tag=PIPELINE_TAG,
                         tags=[*BASE_TAGS, encoder, denoiser])
    return data.to_yaml()


def render_card(*, repo_name: str, assembly_yaml: str, metrics: dict[str, Any] | None, has_grid: bool,
                encoder: str, denoiser: str, latent_shape: tuple[int, ...], license_id: str,
                num_classes: int) -> str:
    """The whole ``README.md`` text; ``ModelCard`` parses it back (a malformed front matter raises)."""
    from huggingface_hub import ModelCard

    sections = [f"# {repo_name.rpartition('/')[2]}", _summary(encoder, denoiser, latent_shape, num_classes),
                _usage(repo_name), _samples(has_grid), _metrics(metrics), _assembly(assembly_yaml), _layout()]
    text = f"---\n{card_metadata(encoder, denoiser, license_id)}\n---\n\n" + "\n\n".join(sections) + "\n"
    ModelCard(text)  # validates the front matter offline (ModelCard.validate needs the network)
    return text


def _summary(encoder: str, denoiser: str, latent_shape: tuple[int, ...], num_classes: int) -> str:
    shape = "x".join(map(str, latent_shape))
    return (f"A class-conditional image generator trained with rae-framework, an implementation of *Diffusion "
            f"Transformers with Representation Autoencoders* (reference code: https://github.com/bytetriper/RAE): "
            f"a frozen `{encoder}` encoder and a "
            f"trained ViT decoder (the RAE, latents {shape}), and a `{denoiser}` denoiser trained by flow "
            f"matching on the normalised latents ({num_classes} classes).")


def _usage(repo_name: str) -> str:
    return f"""## Usage

The whole pipeline, with rae-framework installed:

```python
import rae_framework

pipe = rae_framework.load_exported("{repo_name}")  # a Hub repo id or a local folder
images = pipe([0, 1, 2], num_images_per_label=4, seed=0).images  # PIL images
```

or from the command line: `rae sample {repo_name} --labels 0,1,2 --out grid.png`.

The autoencoder alone, with diffusers' `AutoencoderRAE`:

```python
import torch
from diffusers import AutoencoderRAE

vae = AutoencoderRAE.from_pretrained("{repo_name}", subfolder="vae").eval()
images = torch.rand(1, 3, 256, 256)  # in [0, 1]
latents = vae.encode(images).latent  # normalised with the latent statistics of the run
reconstruction = vae.decode(latents).sample
```"""


def _samples(has_grid: bool) -> str:
    if not has_grid:
        return "## Samples\n\nThe run wrote no sample grid (its `sample` stage did not run)."
    return "## Samples\n\nOne row per class, from the run's `sample` stage:\n\n![samples](samples/grid.png)"


def _metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "## Metrics\n\nThe run recorded no metrics (`metrics.json` is absent or empty)."
    return f"## Metrics\n\nThe run's `metrics.json`:\n\n```json\n{json.dumps(metrics, indent=2, sort_keys=True)}\n```"


def _assembly(assembly_yaml: str) -> str:
    return ("## Assembly\n\nThe run's resolved assembly (every component, its params, the data and the stages; "
            f"`rae run` reproduces the run from it):\n\n```yaml\n{assembly_yaml.rstrip()}\n```")


def _layout() -> str:
    return """## Files

- `vae/`: diffusers `AutoencoderRAE` (`config.json` with `latents_mean` / `latents_std`,
  `diffusion_pytorch_model.safetensors`), and `rae_framework.safetensors`: the exact latent statistics and
  decoder position table that rae-framework reads.
- `transformer/`: the denoiser (the run's EMA weights) and its rae-framework name and params; `guide/`, when
  the run samples with autoguidance, its guide denoiser in the same form.
- `scheduler/scheduler_config.json`: the noise schedule, the sampler and the guidance (name and params each).
- `classes.json` (when the run names its classes), `metrics.json`, `samples/grid.png`."""
