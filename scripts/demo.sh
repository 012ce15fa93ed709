#!/usr/bin/env bash
# Install, then train the offline demo grid and list its runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/finetune-tui run --preset demo "$@"
.venv/bin/finetune-tui runs --grid demo
