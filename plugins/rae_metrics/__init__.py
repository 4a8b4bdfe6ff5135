"""First-party rae-framework plugin: evaluation metrics and their feature networks.

Metrics (kind ``metric``): ``psnr``, ``ssim``, ``lpips``, ``rfid`` (paired: reconstructions vs originals),
``fid`` (gFID), ``sfid``, ``inception-score``, ``precision-recall`` (generation metrics), ``class-accuracy``
(samples vs the labels they were generated for). Feature networks (kind ``feature_extractor``, added by this
plugin): ``inception`` (the FID Inception-v3, equal to pytorch-fid's), ``digits-classifier`` (the quickstart's
domain CNN, shipped weights: preset ``digits-fid``) and ``random-conv`` (offline); numbers of the non-standard
ones are reported under keys suffixed ``@<extractor>``.

Every metric implements :class:`rae_framework.interfaces.Metric`'s contract: ``paired`` and the mergeable
state ``state_tensors()`` / ``load_state_tensors()`` / ``state_reductions`` (``"sum"`` -> all-reduce,
``"cat"`` -> gather), plus ``merge()``; see :mod:`rae_metrics.state`.
"""
