#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs the main job: the Debtags recipe (shortened to
# 2,000 examples per split) against the TF-IDF + linear baseline and BCE, printing the results table.
# Arguments are passed on to `mlsupcon compare`: to run it again, add --resume (continue an
# interrupted demo; finished runs are only re-evaluated) or --overwrite (start over).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mlsupcon compare --dataset debtags --max-examples 2000 \
  --losses linear,bce,mulsupcon --seeds 1 --output runs/quickstart --no-progress "$@"
