"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl

METRICS = {
    "psnr": ("rae_metrics.psnr:PSNR", "PSNRConfig", "Mean per-image PSNR (dB) of reconstructions vs originals"),
    "ssim": ("rae_metrics.ssim:SSIM", "SSIMConfig", "Gaussian-window SSIM (skimage-equal), mean over images"),
}


@hookimpl
def rae_register_components(registrar):
    """Metrics (kind ``metric``) and their feature networks (kind ``feature_extractor``)."""
    for name, (factory, config, summary) in METRICS.items():
        registrar.add("metric", name, factory=factory, config=f"rae_metrics.configs:{config}", summary=summary)
