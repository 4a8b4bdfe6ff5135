"""Make PyPI's CUDA-linked torchvision importable beside a CPU-only torch (the README's Set-up explains why).

``import torchvision`` registers fake kernels for ``torchvision::nms``; when its compiled ``_C`` library
cannot load (CUDA build on a CPU-only torch) the operator schema does not exist and the import fails, which
breaks timm, open_clip, lpips and transformers' vision models. Before torchvision's first import we try to
load ``_C``; only if that fails do we define the two schemas it needs. Where torchvision loads normally this
does nothing. torchvision's C++ ops and image decoding stay unavailable: images are decoded with PIL.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _torchvision_c_library() -> Path | None:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    return candidates[0] if candidates else None


def _schemas_missing(torch) -> list[str]:
    missing = []
    for op_name in _SCHEMAS:
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{op_name}", "")
        except RuntimeError:
            missing.append(op_name)
    return missing


def ensure_torchvision_importable() -> bool:
    """Prepare torch so that ``import torchvision`` succeeds; returns True if schemas had to be defined."""
    if "torchvision" in sys.modules:
        return False
    library = _torchvision_c_library()
    if library is None:  # torchvision not installed: nothing to prepare
        return False
    import torch

    try:
        torch.ops.load_library(str(library))
        return False
    except (OSError, RuntimeError):
        pass
    missing = _schemas_missing(torch)
    if missing:
        fragment = torch.library.Library("torchvision", "FRAGMENT")
        for op_name in missing:
            fragment.define(_SCHEMAS[op_name])
        _KEEP_ALIVE.append(fragment)
    return bool(missing)


# A Library object unregisters its definitions when garbage-collected; the fragment must live as long as
# the process. This list is the only module-level state and is never read.
_KEEP_ALIVE: list[object] = []
