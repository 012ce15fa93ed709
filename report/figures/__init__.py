"""Drawing only: each module turns numbers computed in report.metrics / report.tables into one PNG kind.

Figures are built with ``matplotlib.figure.Figure`` (Agg canvas, no pyplot, no display),
so reports can be made from a worker thread of the TUI.
"""
