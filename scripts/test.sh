#!/usr/bin/env bash
# Install with the test tools and every optional part, then run the whole test suite (2 processes).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,sync,search,ray bash scripts/setup.sh
# real Fashion-MNIST for the tests that compare against it (Debian's package; best effort: they skip without it)
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo -n")
  { $SUDO apt-get install -y -q dataset-fashion-mnist || { $SUDO apt-get update -q && $SUDO apt-get install -y -q dataset-fashion-mnist; }; } >/dev/null 2>&1 \
    || echo "note: dataset-fashion-mnist not installed; the tests that read it will skip" >&2
fi
# one thread per test process: two processes on two cores, no oversubscription
export HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1
exec .venv/bin/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider "$@"
