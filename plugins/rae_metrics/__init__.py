"""First-party rae-framework plugin: evaluation metrics and their feature networks.

Metrics (kind ``metric``): ``psnr``, ``ssim``, ``lpips``, ``rfid`` (paired: reconstructions vs originals),
``fid`` (gFID), ``sfid``, ``inception-score``, ``precision-recall`` (generation metrics). Feature networks (kind ``feature_extractor``, added
by this plugin): ``inception`` (the FID Inception-v3, equal to pytorch-fid's) and ``random-conv`` (offline,
non-standard: its numbers are reported under keys suffixed ``@<extractor>``).

Every metric implements :class:`rae_framework.interfaces.Metric`'s contract: ``paired`` and the mergeable
state ``state_tensors()`` / ``load_state_tensors()`` / ``state_reductions`` (``"sum"`` -> all-reduce,
``"cat"`` -> gather), plus ``merge()``; see :mod:`rae_metrics.state`.
"""
