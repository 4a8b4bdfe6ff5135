"""What a denoiser is conditioned on: :class:`Conditioning`, a small typed container of tensors.

A conditioner (kind ``conditioner``) turns a batch of conditions (class labels, prompts) into one; the
denoiser reads the fields it was built for:

* ``labels (B,)`` int64: class labels, embedded by the denoiser's own label table (the class path; the null
  label is the denoiser's ``num_classes``).
* ``pooled (B, Dp)``: one vector per sample, added to the time embedding for adaLN (the text path).
* ``tokens (B, L, Dt)`` with ``mask (B, L)`` bool (True = a real token, False = padding): attended to by
  cross attention (the text path).
* ``null (B,)`` bool: the rows that are the null condition (dropped for classifier-free guidance); a
  denoiser with a learned null embedding replaces those rows by it.

Rows are samples: :meth:`Conditioning.rows`, :meth:`Conditioning.cat` and :meth:`Conditioning.where` select,
concatenate (cond and uncond batched for CFG) and replace rows (condition dropout) on every field at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

__all__ = ["Conditioning", "as_conditioning"]


@dataclass(frozen=True)
class Conditioning:
    """A batch of conditions as tensors; every field present has the batch size B as its first dim."""

    labels: torch.Tensor | None = None  # (B,) int64
    pooled: torch.Tensor | None = None  # (B, Dp)
    tokens: torch.Tensor | None = None  # (B, L, Dt)
    mask: torch.Tensor | None = None  # (B, L) bool, True = real token
    null: torch.Tensor | None = None  # (B,) bool, True = the null condition

    def __post_init__(self) -> None:
        sizes = {name: value.shape[0] for name, value in self._present().items()}
        if not sizes:
            raise ValueError("a Conditioning needs at least one of labels, pooled, tokens")
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Conditioning fields disagree on the batch size: {sizes}")
        if (self.tokens is None) != (self.mask is None):
            raise ValueError("Conditioning: tokens and mask come together (mask (B, L) bool, True = real token)")
        if self.tokens is not None and self.mask.shape != self.tokens.shape[:2]:
            raise ValueError(f"Conditioning: mask {tuple(self.mask.shape)} does not match tokens "
                             f"{tuple(self.tokens.shape)}")

    def _present(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def _map(self, function: Any) -> Conditioning:
        return replace(self, **{name: function(value) for name, value in self._present().items()})

    @property
    def batch_size(self) -> int:
        """B, the number of samples."""
        return next(iter(self._present().values())).shape[0]

    def __len__(self) -> int:
        return self.batch_size

    def to(self, device: torch.device | str) -> Conditioning:
        """Every tensor on ``device`` (dtypes unchanged)."""
        return self._map(lambda value: value.to(device))

    def rows(self, index: torch.Tensor | slice) -> Conditioning:
        """The samples at ``index`` (a ``(B,)`` bool mask, integer indices or a slice)."""
        return self._map(lambda value: value[index])

    def with_null(self, null: torch.Tensor) -> Conditioning:
        """The same condition with the null-row flags ``null (B,)`` bool."""
        return replace(self, null=null.to(torch.bool))

    def null_rows(self) -> torch.Tensor:
        """``(B,)`` bool: the null flags, all False when none are set."""
        device = next(iter(self._present().values())).device
        return self.null if self.null is not None else torch.zeros(self.batch_size, dtype=torch.bool, device=device)

    def cat(self, other: Conditioning) -> Conditioning:
        """``self`` then ``other`` along the batch (e.g. conditional then unconditional rows for CFG); both need
        the same fields; the shorter token sequence is padded (mask False)."""
        mine, theirs = _same_length(self, other)
        if set(mine) != set(theirs):
            raise ValueError(f"cannot concatenate Conditionings with fields {sorted(mine)} and {sorted(theirs)}")
        joined = {name: torch.cat([mine[name], theirs[name]]) for name in mine}
        if self.null is not None or other.null is not None:
            joined["null"] = torch.cat([self.null_rows(), other.null_rows()])
        return Conditioning(**joined)

    def where(self, drop: torch.Tensor, null: Conditioning) -> Conditioning:
        """Rows ``drop (B,)`` bool replaced by the rows of ``null`` (of the same batch size), flagged null: the
        condition dropout of classifier-free-guidance training."""
        mine, theirs = _same_length(self, null)
        if set(mine) != set(theirs):
            raise ValueError(f"the null condition has fields {sorted(theirs)}, the condition {sorted(mine)}")
        swapped = {name: torch.where(drop.view(-1, *([1] * (value.dim() - 1))), theirs[name], value)
                   for name, value in mine.items()}
        return Conditioning(**swapped, null=self.null_rows() | drop.to(torch.bool))

    def _present_but_null(self) -> dict[str, torch.Tensor]:
        return {name: value for name, value in self._present().items() if name != "null"}


def _padded(fields_: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
    """``fields_`` with tokens ``(B, L, D)`` and mask ``(B, L)`` padded to ``length`` (zeros, False)."""
    if "tokens" not in fields_ or fields_["tokens"].shape[1] == length:
        return fields_
    missing = length - fields_["tokens"].shape[1]
    tokens, mask = fields_["tokens"], fields_["mask"]
    return {**fields_, "tokens": torch.cat([tokens, tokens.new_zeros(tokens.shape[0], missing, tokens.shape[2])], 1),
            "mask": torch.cat([mask, mask.new_zeros(mask.shape[0], missing)], 1)}


def _same_length(first: Conditioning, second: Conditioning) -> tuple[dict, dict]:
    """The fields (without ``null``) of both, token sequences padded to the longer one."""
    mine, theirs = first._present_but_null(), second._present_but_null()
    length = max((fields_["tokens"].shape[1] for fields_ in (mine, theirs) if "tokens" in fields_), default=0)
    return _padded(mine, length), _padded(theirs, length)


def as_conditioning(condition: torch.Tensor | Conditioning) -> Conditioning:
    """A label tensor ``(B,)`` as ``Conditioning(labels=...)``; a Conditioning as is."""
    return condition if isinstance(condition, Conditioning) else Conditioning(labels=condition)
