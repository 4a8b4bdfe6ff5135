"""The typed interfaces every component implements.

Conventions shared by all kinds (the reference implementation's):

* Images are ``(B, 3, H, W)`` float tensors with values in ``[0, 1]``.
* Tokens are ``(B, N, C)``; patch tokens are in row-major order (token ``n = row * w + col``).
* Latents are ``(B, C, h, w)`` with ``h * w = N`` (the RAE reshapes tokens ``(B, N, C) -> (B, C, h, w)``).
* Time ``t`` is a float tensor ``(B,)`` in ``[0, 1]``: **t = 0 is data, t = 1 is pure Gaussian noise**.
  The path is ``x_t = (1 - t) * x + t * eps`` and a denoiser predicts the velocity ``eps - x = dx_t/dt``.
* Class labels are int64 ``(B,)``; the null (unconditional) label is ``num_classes``.
* Conditions (labels, prompts) become a :class:`~rae_framework.conditioning.Conditioning` through a
  :class:`Conditioner`; a denoiser takes either that or, as a shorthand for the class path, a label tensor.

Every component is constructed from one argument, its frozen pydantic ``Config`` (see
:class:`rae_framework.config.ComponentConfig`), exposed as the class attribute ``Config``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from rae_framework.conditioning import Conditioning
from rae_framework.config import Component, ComponentConfig, LatentShape
from rae_framework.stage import Stage
from rae_framework.tracker import Tracker

__all__ = [
    "ComponentConfig",
    "Component",
    "Encoder",
    "Decoder",
    "Denoiser",
    "NoiseSchedule",
    "Sampler",
    "SampleResult",
    "VelocityFn",
    "Discriminator",
    "Guidance",
    "Metric",
    "Reduction",
    "PerceptualLoss",
    "Stage",
    "AdversarialLoss",
    "Augmentation",
    "Tracker",
    "Conditioner",
    "Conditioning",
]

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``velocity(x_t (B, C, h, w), t (B,)) -> v (B, C, h, w)``; guidance is already folded in."""


class Encoder(Component, nn.Module, ABC):
    """A frozen representation encoder: normalised pixels -> tokens.

    The caller (the RAE) resizes the ``[0, 1]`` image to ``input_size`` and normalises it with
    ``image_mean`` / ``image_std`` before calling :meth:`forward`.
    """

    input_size: int  # side of the square image the encoder expects (e.g. 224)
    patch_size: int  # encoder patch side (e.g. 14)
    token_dim: int  # C of the output tokens (e.g. 768)
    num_prefix_tokens: int  # special tokens (CLS, registers) leading the output, dropped by the RAE
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    @property
    def num_tokens(self) -> int:
        """Number of patch tokens N (prefix tokens excluded) at ``input_size``."""
        return (self.input_size // self.patch_size) ** 2

    @property
    def latent_shape(self) -> LatentShape:
        """``(C, h, w)`` of the RAE's latents: the token dim and the token grid at ``input_size`` (a built
        encoder's twin of :func:`rae_framework.config.latent_shape_of`, which reads only its Config)."""
        grid = self.input_size // self.patch_size
        return LatentShape(self.token_dim, grid, grid)

    @abstractmethod
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, input_size, input_size)`` normalised pixels -> ``(B, num_prefix_tokens + N, C)`` tokens.

        The final LayerNorm is applied without its affine parameters (the paper's "normalize").
        """


class Decoder(Component, nn.Module, ABC):
    """Tokens -> pixels, in the encoder's *normalised* pixel space (the RAE undoes mean/std)."""

    token_dim: int  # C of the input tokens
    patch_size: int  # output pixels per token side
    out_channels: int

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    @abstractmethod
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` row-major tokens -> ``(B, out_channels, p * sqrt(N), p * sqrt(N))``."""

    @property
    @abstractmethod
    def last_layer_weight(self) -> torch.Tensor:
        """Weight of the last layer, for the adaptive GAN weight ``|grad L_rec| / |grad L_gan|``."""


class Denoiser(Component, nn.Module, ABC):
    """Predicts the flow-matching velocity ``eps - x`` of a noisy latent.

    Its Config may expose an integer property ``token_width``, the widest layer that sees the tokens; the
    assembly then warns when it is narrower than the latent channels (the paper's width finding).
    """

    in_channels: int  # latent channels C
    input_size: int  # latent side h (= w)
    num_classes: int  # the null label is ``num_classes``
    text_dim: int | None = None  # width of the Conditioning.tokens it reads (None: labels, the class path)
    pooled_dim: int | None = None  # width of the Conditioning.pooled it reads (None: none)

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    @property
    def latent_shape(self) -> LatentShape:
        """``(C, h, w)`` of the latents it denoises (``in_channels``, ``input_size`` squared)."""
        return LatentShape(self.in_channels, self.input_size, self.input_size)

    @abstractmethod
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | Conditioning) -> torch.Tensor:
        """``x (B, C, h, w)``, ``t (B,)`` in [0, 1], ``y``: labels ``(B,)`` int64 or a :class:`Conditioning`
        -> velocity ``(B, C, h, w)``."""


class Conditioner(Component, nn.Module, ABC):
    """Turns a batch of conditions (class labels, prompts) into the :class:`Conditioning` a denoiser reads.

    ``input_kind`` says what :meth:`encode` takes: ``"labels"`` (ints) or ``"text"`` (strings). The widths it
    produces (``pooled_dim``, ``token_dim``; None when absent) are exposed torch-free by its Config too, so
    that an assembly derives the denoiser's conditioning widths from them. A conditioner is frozen: it has
    no trainable parameters (a learned null embedding lives in the denoiser).
    """

    input_kind: str  # "labels" | "text"
    pooled_dim: int | None  # Dp of Conditioning.pooled, None when it has none
    token_dim: int | None  # Dt of Conditioning.tokens, None when it has none

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    @abstractmethod
    def encode(self, conditions: Sequence[str] | Sequence[int] | torch.Tensor) -> Conditioning:
        """A batch of B conditions -> their :class:`Conditioning`, on the conditioner's device."""

    @abstractmethod
    def null(self, batch_size: int) -> Conditioning:
        """The null condition (classifier-free guidance's unconditional input) for ``batch_size`` samples,
        every row flagged ``null``."""


class NoiseSchedule(Component, ABC):
    """The probability path and its time distributions (training and sampling)."""

    @abstractmethod
    def sample_time(self, batch_size: int, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
        """Training times ``(B,)`` in [0, 1], after any time shift."""

    @abstractmethod
    def interpolate(self, x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t`` on the path: data ``x`` at t = 0, ``noise`` at t = 1. ``t`` is ``(B,)``."""

    @abstractmethod
    def velocity_target(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The regression target ``dx_t/dt`` (``noise - x`` for the linear path)."""

    @abstractmethod
    def sampling_grid(self, num_steps: int) -> torch.Tensor:
        """Decreasing float32 grid ``(num_steps,)`` from noise (about 1) towards data, shifted."""

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weight ``(B,)``; 1 (no weighting) unless a schedule overrides it."""
        return torch.ones_like(t)

    def training_loss(self, denoiser: Denoiser, x: torch.Tensor, y: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample flow-matching loss ``(B,)``: mean over (C, h, w) of the weighted squared error.

        Draw order is the reference's: the noise ``(B, C, h, w)`` first, then the times.
        """
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        t = self.sample_time(x.shape[0], generator=generator, device=x.device).to(x.dtype)
        return self.loss_at(denoiser, x, y, noise, t)

    def loss_at(self, denoiser: Denoiser, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
        """Per-sample loss ``(B,)`` with the draws given: ``noise (B, C, h, w)`` and times ``t (B,)``.

        The squared error is taken in float32 (the prediction may come from bf16 autocast).
        """
        t = t.to(x.dtype)
        prediction = denoiser(self.interpolate(x, noise, t), t, y)  # (B, C, h, w)
        error = (prediction.float() - self.velocity_target(x, noise).float()) ** 2
        return error.mean(dim=tuple(range(1, x.dim()))) * self.loss_weight(t)


@dataclass(frozen=True)
class SampleResult:
    """What a sampler returns: the final state and how much work it took."""

    samples: torch.Tensor  # (B, C, h, w), the state at the end of the grid
    num_function_evals: int
    trajectory: torch.Tensor | None = None  # (K, B, C, h, w) states at the grid points, if requested


class Sampler(Component, ABC):
    """Integrates a velocity field from noise (t = 1) towards data (t = 0)."""

    @abstractmethod
    def sample(self, velocity: VelocityFn, noise: torch.Tensor, schedule: NoiseSchedule,
               *, generator: torch.Generator | None = None, return_trajectory: bool = False) -> SampleResult:
        """Start from ``noise (B, C, h, w)`` and integrate ``velocity`` along ``schedule``'s grid."""


class Discriminator(Component, nn.Module, ABC):
    """GAN discriminator for stage-1 decoder training."""

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    @abstractmethod
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` images in [0, 1] -> real/fake logits ``(B, ...)`` (any trailing shape)."""


class Guidance(Component, ABC):
    """Turns a denoiser (and optionally a guide denoiser) into the velocity field a sampler integrates."""

    needs_guide: bool = False  # True for autoguidance: the run engine must supply ``guide``

    @abstractmethod
    def velocity(self, denoiser: Denoiser, labels: torch.Tensor | Conditioning, *,
                 guide: Denoiser | None = None, null: Conditioning | None = None) -> VelocityFn:
        """A :data:`VelocityFn` for class ``labels (B,)`` or a :class:`Conditioning` of B rows; only the passes
        it needs are computed. ``null`` (B rows) is the unconditional input where the guidance needs one; for
        labels it defaults to the null label ``denoiser.num_classes``."""


Reduction = Literal["sum", "cat"]
"""How two ranks' values of one metric state tensor combine: ``"sum"`` adds them (an all-reduce),
``"cat"`` concatenates their rows along dim 0 (a gather)."""


class Metric(Component, ABC):
    """A streaming evaluation metric (PSNR, SSIM, FID, ...): update over batches, then compute.

    The contract the run engine relies on (and nothing else: no metric names):

    * ``paired`` (class attribute or property, a bool) says what ``update`` is fed. ``True``: a
      reconstruction metric, ``update(generated=reconstructions, reference=originals)`` with the two
      batches paired image by image (PSNR, SSIM, rFID). ``False``: a generation metric,
      ``update(generated=samples)``, plus ``update(reference=images)`` when :attr:`wants_reference_images`.
    * The accumulated state is a set of named tensors, ``state_tensors()``, each combined across ranks as
      ``state_reductions[name]`` says. The engine reduces every state tensor, calls
      ``load_state_tensors`` with the result, then ``compute``; the value must equal a single process's
      over all batches. A metric that cannot merge its state cannot run distributed.
    """

    paired: ClassVar[bool]  # True: reconstructions vs their originals; False: samples (vs a reference set)
    state_reductions: ClassVar[Mapping[str, Reduction]]  # state name -> "sum" | "cat"

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        paired = getattr(self, "paired", None)
        if not isinstance(paired, bool):
            raise TypeError(f"{type(self).__name__}.paired must be declared as a bool, got {paired!r}")
        reductions = getattr(self, "state_reductions", None)
        if not isinstance(reductions, Mapping):
            raise TypeError(f"{type(self).__name__} must declare state_reductions: state name -> 'sum' | 'cat'")
        unknown = {name: how for name, how in reductions.items() if how not in ("sum", "cat")}
        if unknown:
            raise TypeError(f"{type(self).__name__}.state_reductions: use 'sum' or 'cat', got {unknown}")

    @property
    def wants_reference_images(self) -> bool:
        """For a generation metric: whether the engine should also feed reference images (``update(
        reference=...)``). False when the metric has none to compare with or brings its own reference set."""
        return False

    @abstractmethod
    def reset(self) -> None:
        """Forget everything accumulated."""

    @abstractmethod
    def update(self, generated: torch.Tensor | None = None, reference: torch.Tensor | None = None) -> None:
        """Accumulate a batch of images ``(B, 3, H, W)`` in [0, 1]; paired metrics get both."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The accumulated state, one tensor per name of ``state_reductions`` (``"sum"`` states have a
        fixed shape even before the first update, so that ranks can all-reduce them)."""

    @abstractmethod
    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        """Replace the state with ``state`` (for example the tensors reduced across ranks)."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """The metric values, e.g. ``{"psnr": 27.1}``; distributed callers reduce states before this."""


class PerceptualLoss(Component, nn.Module, ABC):
    """A learned perceptual distance such as LPIPS."""

    def __init__(self, config: ComponentConfig) -> None:
        nn.Module.__init__(self)
        Component.__init__(self, config)

    @abstractmethod
    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Two ``(B, 3, H, W)`` batches in [0, 1] -> per-sample distance ``(B,)``."""


class AdversarialLoss(Component, ABC):
    """A discriminator loss and its generator loss (kind ``gan_loss``), used by decoder training."""

    @abstractmethod
    def discriminator_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Scalar loss of the discriminator from its logits on real and (detached) fake images."""

    @abstractmethod
    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Scalar loss of the generator (the decoder) from the discriminator's logits on its images."""


class Augmentation(Component, ABC):
    """A differentiable, seeded image augmentation (kind ``augmentation``), e.g. DiffAugment for a discriminator."""

    @abstractmethod
    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, 3, H, W)`` -> augmented ``(B, 3, H, W)``; every random draw comes from ``generator``."""

