"""Reports: every figure and table of the reference experiment, from the run store.

``report.api.make_report(grid_dir)`` writes ``<grid>/report/`` (PNGs, CSVs, report.md,
report.html); ``finetune-tui report GRID`` is its command line (``report/cli.py``).
Numbers are computed in ``metrics`` and ``tables``, drawn in ``figures/``, written up in ``index``.
"""
