"""Shared test set-up: offline, deterministic, small."""

import os

# no hub probes from tests: the weights policy decides at once
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
