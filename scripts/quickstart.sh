#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs the main job: the Debtags recipe (shortened to
# 2,000 examples per split) against the TF-IDF + linear baseline and BCE, printing the results table.
# Arguments are passed on to `mlsupcon compare`. Running it again starts the demo over in
# runs/quickstart (--overwrite); pass --resume to continue an interrupted demo instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
fresh=(--overwrite)
for arg in "$@"; do [[ "$arg" == "--resume" ]] && fresh=(); done
if [[ ! -e runs/quickstart ]]; then fresh=(); fi
exec .venv/bin/mlsupcon compare --dataset debtags --max-examples 2000 \
  --losses linear,bce,simdis --seeds 1 --output runs/quickstart --no-progress "${fresh[@]}" "$@"
