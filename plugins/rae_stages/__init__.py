"""First-party rae-framework plugin: the five stages of the paper's pipeline (kind ``stage``).

``train_decoder`` (stage 1), ``latent_stats``, ``train_denoiser`` (stage 2), ``sample`` and ``evaluate``: one
module each (the loop and the :class:`~rae_framework.interfaces.Stage` class), their torch-free settings and
specs in :mod:`rae_stages.configs`. Like every plugin, it uses only the public API (the stage toolkit in
:mod:`rae_framework.engine`) and reaches other plugins' components only through the registry.
"""
