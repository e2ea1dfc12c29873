"""Test-wide settings.

One intra-op thread: the suite is thousands of tiny tensor ops, for which torch's thread pool
costs more than it gives (on a 2-core runner, tiny ops ran up to 50x slower with 2 threads
while the other core was busy).
"""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Feature and linear-model caches of the test runs go to a throw-away folder, not the user's.
if "MLSUPCON_CACHE" not in os.environ:
    import tempfile

    os.environ["MLSUPCON_CACHE"] = tempfile.mkdtemp(prefix="mlsupcon-test-cache-")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
