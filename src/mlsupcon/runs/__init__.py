"""The run folder and what reads it: no training here, and nothing heavy at import.

* :mod:`~mlsupcon.runs.folder`: what a run writes (:data:`~mlsupcon.runs.folder.RUN_ARTEFACTS`),
  which folders a run or a compare may write into, the folder's lock, its ``config.yaml`` and
  ``environment.json``, ``--resume`` / ``--overwrite``.
* :mod:`~mlsupcon.runs.io`: atomic writes, safetensors weights, JSON, manifests, full disks.
* :mod:`~mlsupcon.runs.report`: ``results.csv`` and the compare table (``mlsupcon report``).
* :mod:`~mlsupcon.runs.figures`: compare's figures, drawn from the runs' logs and embeddings.
"""
