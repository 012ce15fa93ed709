"""Shared test set-up: offline, deterministic, small."""

import os
import tempfile

# no hub probes from tests: the weights policy decides at once
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# the user's own settings file and store variable must not steer the tests (engine.settings)
os.environ["FINETUNE_TUI_CONFIG"] = os.path.join(os.path.dirname(__file__), "no-such-settings.toml")
os.environ.pop("FINETUNE_TUI_RUNS", None)
# the host's live workers as one test process sees them: its own, not the other test process's (whose workers
# would change this one's thread counts, engine.cpu_claims)
os.environ["FINETUNE_TUI_HOST_DIR"] = tempfile.mkdtemp(prefix="finetune-tui-test-host-")
