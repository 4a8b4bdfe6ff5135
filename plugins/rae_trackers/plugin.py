"""Registers the built-in tracker components with rae-framework through the public hook."""

from rae_framework import hookimpl

_CONFIGS = "rae_trackers.configs"
_TRACKERS = [
    ("tensorboard", "rae_trackers.tensorboard_events:TensorBoardTracker", "TensorBoardConfig",
     "TensorBoard event files under the run directory (the default)"),
    ("wandb", "rae_trackers.wandb_run:WandbTracker", "WandbConfig",
     "A Weights & Biases run, continued on resume (online, or offline under the run directory)"),
    ("mlflow", "rae_trackers.mlflow_run:MlflowTracker", "MlflowConfig",
     "An MLflow run on a tracking server or a file: store, continued on resume"),
]


@hookimpl
def rae_register_components(registrar):
    """The tensorboard, wandb and mlflow trackers (kind ``tracker``)."""
    for name, factory, config, summary in _TRACKERS:
        registrar.add("tracker", name, factory=factory, config=f"{_CONFIGS}:{config}", summary=summary)
