"""mlsupcon: multi-label supervised contrastive learning.

Layers, each importing only from those above it in this list:
``losses`` (torch only) → ``data`` → ``models`` → ``evaluation`` → ``training`` → ``cli``.
"""

__version__ = "0.1.0"
