#!/usr/bin/env bash
# Install with test extras, then run the whole test suite (2 processes).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg
exec .venv/bin/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider "$@"
