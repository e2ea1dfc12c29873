#!/usr/bin/env bash
# Sets everything up on a fresh machine, then runs the main job: a comparison of BCE and four
# contrastive losses on the bundled Debtags set, printing the results table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mlsupcon compare --config configs/debtags.yaml \
  --losses bce,all,any,mulsupcon,simdis --seeds 1 --output runs/quickstart --no-progress "$@"
