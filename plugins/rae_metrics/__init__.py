"""First-party rae-framework plugin: evaluation metrics and their feature networks.

Metrics (kind ``metric``): ``psnr``, ``ssim`` (paired: reconstructions vs originals), ``fid`` (``key`` fid,
rfid or gfid), ``inception-score``, ``precision-recall``, ``class-accuracy`` (samples vs the labels they were
generated for). Feature networks (kind ``feature_extractor``, added by this plugin): ``inception`` (the FID
Inception-v3, equal to pytorch-fid's), ``digits-classifier`` (the quickstart's domain CNN, shipped weights:
preset ``digits-fid``) and ``random-conv`` (offline); numbers of the non-standard ones are reported under
keys suffixed ``@<extractor>``.

Distributed evaluation: every metric exposes ``state_tensors()``, ``load_state_tensors()``, ``merge()`` and
``state_reductions`` (``"sum"`` -> all-reduce, ``"cat"`` -> gather); see :mod:`rae_metrics.state`.
"""
