"""The CLI's malloc settings: applied on glibc Linux, never over the user's own."""

import subprocess
import sys

import pytest

CHECK = "from mlsupcon.cli.allocator import tune_malloc; print(tune_malloc())"


def _run(env_extra):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.pop("MLSUPCON_MALLOC_TUNING", None)
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_applied_by_default_and_not_over_the_users_settings():
    assert _run({}).stdout.strip() == "True"
    assert _run({"MLSUPCON_MALLOC_TUNING": "0"}).stdout.strip() == "False"
    assert _run({"MALLOC_ARENA_MAX": "2"}).stdout.strip() == "False"
    assert _run({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}).stdout.strip() == "False"


def test_importing_the_library_changes_nothing():
    out = subprocess.run([sys.executable, "-c", "import mlsupcon, mlsupcon.losses, sys; "
                          "print('mlsupcon.cli.allocator' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False"
