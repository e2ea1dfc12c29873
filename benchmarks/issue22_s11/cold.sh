cd "$(dirname "$0")/../.." && mkdir -p runs/i22s11
export MLSUPCON_CACHE=/tmp/coldcache
/usr/bin/time -v .venv/bin/mlsupcon train --dataset jsonl:runs/i22s11/long10k.jsonl --no-progress --output runs/i22s11/cold2-long10k > runs/i22s11/cold2-long10k.log 2>&1
echo "rc=$?" >> runs/i22s11/cold2-long10k.log
