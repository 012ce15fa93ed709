"""Experiment-tracker sync: replay the run store into TensorBoard or MLflow.

Importing this package imports neither tracker; ``sync.tensorboard`` and ``sync.mlflow_sync``
import theirs when they write (optional dependencies: ``pip install 'finetune-tui[sync]'``).

``sync.source.RunHistory.read(run_dir)``: one run as a tracker sees it (torch-free).
``sync.tensorboard.sync_grid(grid_dir, logdir) -> Counts`` and
``sync.mlflow_sync.sync_grid(grid_dir, MlflowTarget(uri, experiment, artifact_root)) -> Counts``:
send what is new; what was sent is kept in ``GridDir.sync_state_file`` (``sync.state``).

Command line: ``finetune-tui sync tensorboard [GRID] [--logdir DIR]`` and
``finetune-tui sync mlflow [GRID] [--tracking-uri URI] [--experiment NAME]``.
"""
