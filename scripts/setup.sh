#!/usr/bin/env bash
# Creates .venv and installs mlsupcon with every extra. Idempotent: a second run only re-checks.
# torch is installed first, pinned through constraints.txt, so that no dependency pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
# Some machines' pip configuration names local index folders that do not exist; pip warns about
# each one on every install. Only those lines are filtered.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet $PIP install -q -c constraints.txt torch==2.13.0
# bench: pytorch-metric-learning, one small wheel whose other dependencies the extras above already bring.
quiet $PIP install -q -c constraints.txt -e ".[all,dev,bench]"
# Fashion-MNIST for the image demo set comes from Debian's package; optional (the other sets need nothing).
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
    || echo "note: dataset-fashion-mnist not installed; the fashion-mosaic dataset will be unavailable" >&2
fi
.venv/bin/python -c "import mlsupcon, torch; print('mlsupcon', mlsupcon.__version__, '| torch', torch.__version__)"
