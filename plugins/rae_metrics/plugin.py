"""Registers this package's components with rae-framework through the public hook."""

from rae_framework import hookimpl

METRICS = {
    "psnr": ("rae_metrics.psnr:PSNR", "PSNRConfig", "Mean per-image PSNR (dB) of reconstructions vs originals"),
    "ssim": ("rae_metrics.ssim:SSIM", "SSIMConfig", "Gaussian-window SSIM (skimage-equal), mean over images"),
    "lpips": ("rae_metrics.lpips_metric:LPIPSMetric", "LPIPSMetricConfig",
              "Mean LPIPS of reconstructions vs originals (any perceptual component)"),
    "fid": ("rae_metrics.fid:FID", "FIDConfig", "Frechet distance of samples vs a reference set (gFID)"),
    "sfid": ("rae_metrics.fid:SpatialFID", "SFIDConfig", "sFID: Frechet distance on ADM's spatial Inception features"),
    "rfid": ("rae_metrics.fid:ReconstructionFID", "RFIDConfig",
             "rFID: Frechet distance of reconstructions vs their originals (paired)"),
    "inception-score": ("rae_metrics.fid:InceptionScore", "InceptionScoreConfig", "Inception Score over splits"),
    "precision-recall": ("rae_metrics.fid:PrecisionRecall", "PrecisionRecallConfig",
                         "Improved precision/recall on k-NN feature manifolds (k=3)"),
    "class-accuracy": ("rae_metrics.class_accuracy:ClassAccuracy", "ClassAccuracyConfig",
                       "Share of class-conditional samples a classifier assigns to their label (per class too)"),
}
FEATURE_EXTRACTORS = {
    "inception": ("rae_metrics.inception:InceptionFeatures", "InceptionConfig",
                  "FID Inception-v3 (pytorch-fid weights): pool3 2048-d + 1008 logits"),
    "random-conv": ("rae_metrics.features:RandomConvFeatures", "RandomConvConfig",
                    "Fixed random conv features: offline tests only, numbers not comparable"),
    "digits-classifier": ("rae_metrics.digits_classifier:DigitsClassifier", "DigitsClassifierConfig",
                          "Small CNN trained on the real digits: 64-d features (digits FID) + 10 logits"),
}


@hookimpl
def rae_register_components(registrar):
    """Metrics (kind ``metric``) and their feature networks (kind ``feature_extractor``)."""
    registrar.add_kind("feature_extractor", "rae_metrics.features:FeatureExtractor")
    for kind, table in (("metric", METRICS), ("feature_extractor", FEATURE_EXTRACTORS)):
        for name, (factory, config, summary) in table.items():
            registrar.add(kind, name, factory=factory, config=f"rae_metrics.configs:{config}", summary=summary)
