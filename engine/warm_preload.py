"""What the warm launcher's fork server imports once for every worker it forks (``engine.warm_launcher``).

Imports only: no torch operation runs and CUDA is not initialised here, so
each forked worker starts as clean as a fresh interpreter would.
"""

import sklearn.metrics  # noqa: F401  (test metrics)
import sklearn.model_selection  # noqa: F401  (the validation split)

import engine.trainer  # noqa: F401  (torch, timm, the engine)
import engine.worker  # noqa: F401
