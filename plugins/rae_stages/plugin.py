"""Registers this package's stages with rae-framework through the public hook."""

from rae_framework import hookimpl

STAGES = {
    "train_decoder": ("rae_stages.train_decoder:TrainDecoder", "TrainDecoderStage"),
    "latent_stats": ("rae_stages.latent_stats:LatentStats", "LatentStatsStage"),
    "train_denoiser": ("rae_stages.train_denoiser:TrainDenoiser", "TrainDenoiserStage"),
    "sample": ("rae_stages.sample:Sample", "SampleStage"),
    "evaluate": ("rae_stages.evaluate:Evaluate", "EvaluateStage"),
}


@hookimpl
def rae_register_components(registrar):
    """The five stages of the paper's pipeline (kind ``stage``), in run order."""
    for name, (factory, config) in STAGES.items():
        registrar.add("stage", name, factory=factory, config=f"rae_stages.configs:{config}",
                      summary=f"{name}: see rae_stages.{name}")
