"""First-party rae-framework plugin: evaluation metrics and their feature networks.

Metrics (kind ``metric``): ``psnr``, ``ssim`` (paired: reconstructions vs originals), ``fid`` (``key`` fid,
rfid or gfid), ``inception-score``, ``precision-recall``. Feature networks (kind ``feature_extractor``, added
by this plugin): ``inception`` (the FID Inception-v3, equal to pytorch-fid's) and ``random-conv`` (offline,
non-standard: its numbers are reported under keys suffixed ``@<extractor>``).

Distributed evaluation: every metric exposes ``state_tensors()``, ``load_state_tensors()``, ``merge()`` and
``state_reductions`` (``"sum"`` -> all-reduce, ``"cat"`` -> gather); see :mod:`rae_metrics.state`.
"""
