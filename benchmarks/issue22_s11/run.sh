#!/usr/bin/env bash
# usage: benchmarks/issue22_s11/run.sh NAME ARGS...  -> runs/i22s11/NAME (log: runs/i22s11/NAME.log)
name=$1; shift
cd "$(dirname "$0")/../.." && mkdir -p runs/i22s11
OMP_NUM_THREADS=${THREADS:-1} /usr/bin/time -v .venv/bin/mlsupcon train "$@" --no-progress --output runs/i22s11/$name > runs/i22s11/$name.log 2>&1
echo "rc=$?" >> runs/i22s11/$name.log
