#!/usr/bin/env bash
# Install with the test tools and every optional part, then run the whole test suite (2 processes).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,sync,ray bash scripts/setup.sh
# one thread per test process: two processes on two cores, no oversubscription
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider "$@"
