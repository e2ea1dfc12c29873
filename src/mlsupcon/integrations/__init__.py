"""mlsupcon's losses inside the libraries people already train with.

* :mod:`mlsupcon.integrations.pml`: pytorch-metric-learning. ``MultiLabelContrastiveLoss`` is a
  ``BaseMetricLossFunction`` taking multi-hot labels ``[B, C]``; it works under pml's
  ``DistributedLossWrapper`` and with a label-aware ``CrossBatchMemory``.
* :mod:`mlsupcon.integrations.sentence_transformers`: ``MultiLabelContrastiveLoss`` for
  ``SentenceTransformerTrainer`` (one text column, or two as two views of each sample).

Both need their library (``pip install 'mlsupcon[integrations]'``); importing this package does
not import either, and importing a submodule without its library raises an ``ImportError`` that
says what to install.
"""
