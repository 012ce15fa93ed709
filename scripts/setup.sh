#!/usr/bin/env bash
# Create .venv and install finetune-tui into it (editable), with every optional part. Idempotent.
# EXTRAS picks the optional dependencies (pyproject.toml): default "sync,search" (TensorBoard and
# MLflow for `finetune-tui sync`, Optuna for a grid's [search]); EXTRAS=test,sync,search adds the
# test tools; EXTRAS= installs the core only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "finetune-tui needs Python >= 3.11 (found $("$PY" --version 2>&1))" >&2; exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
EXTRAS=${EXTRAS-sync,search}
spec="."
[ -n "$EXTRAS" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c 'import torch, timm, textual, onnxruntime; print("installed: torch", torch.__version__, "| timm", timm.__version__, "| textual", textual.__version__, "| onnxruntime", onnxruntime.__version__)'
