"""Export best checkpoints to ONNX, prove them against PyTorch, measure them with onnxruntime.

Importing this package imports nothing heavy; ``export.api`` brings in torch,
``export.predict`` and ``export.cli`` do not.

Python API (for the TUI and scripts)
------------------------------------
``export.api.export_run(run_dir, *, benchmark=True, batches=(1, 8, 32), variants=(), progress=None,
providers=None, device="auto", atol=1e-3, threads=None, bench_config=None, data=None) -> dict``
    Export the run's best checkpoint (``RunDir.best``) to ONNX in its export folder
    (``RunDir.export``, an ``engine.store.ExportDir``: ``.model``; opset 17, dynamic batch,
    metadata for deployment, ``onnx.checker``), compare onnxruntime with PyTorch on the whole
    test split (parity: max |logit diff| <= ``atol`` and no top-1 flip that isn't a near-tie),
    evaluate accuracy and macro F1 both ways, build ``variants`` ("int8": static QDQ for CPU,
    "fp16": for GPU) and time every available provider next to eager PyTorch. Returns the dict
    written as the export's summary (``ExportDir.summary()``, docs/CONTRACTS.md): ``status`` is
    "ok", "parity_failed" (the file is renamed ``ExportDir.failed_model``) or "failed" (``error``
    says why); details (variants, ratios, provider fallbacks, runs per figure) are in
    ``ExportDir.detail()``. The export is written to ``ExportDir.staging`` and swapped in when it
    finished; a failed attempt never replaces a good export (it stays in
    ``ExportDir.failed_attempt`` and ``error`` says the previous one is kept). User errors (no checkpoint, unknown variant or provider, an export of the
    same run already running) raise ``export.api.ExportError``. Blocking: call it from a
    worker thread. ``progress`` gets ``export.api.ExportProgress(run_id, stage, done, total)``.
    ``providers``: e.g. ``["cpu", "cuda"]``; default all this onnxruntime offers; one that falls
    back to CPU is listed in the detail's ``providers`` as a fallback, never timed as itself.

``export.api.export_grid(grid_dir, select="all", **export_run_kwargs) -> list[dict]``
    ``select``: "all" | "best-per-dataset" | "best-per-dataset-backbone" (best:
    ``engine.store.BEST_RULE`` through ``selection_key``, validation only; the test set never
    chooses). Finished runs only. Writes the grid's exports table (``GridDir.exports_csv``) and
    returns the summaries, each with ``run_id``.

``export.api.load_export(run_dir) -> dict | None``
    A run's export summary, None before its first export (for the runs view).

``export.api.grid_table(grid_dir) -> pandas.DataFrame`` / ``write_grid_csv(grid_dir) -> Path``
    One row per exported run: dataset, backbone, strategy, status, torch_/onnx_ accuracy and F1,
    parity, size_mb, variant columns (``int8_size_mb``, ``int8_accuracy_delta``, ...), latency
    ``<cpu|cuda|trt>_b<batch>_p50_ms|p90_ms|p99_ms|img_s``, PyTorch ``torch_<cpu|cuda>_b<batch>_
    p50_ms|img_s``, ``<provider>_b<batch>_vs_torch`` (ONNX/PyTorch images/s, > 1 = ONNX faster),
    ``pareto_<provider>_b<smallest batch>`` per dataset, ``provider_fallbacks`` and provenance.

``export.pareto.pareto_front(points) -> list[bool]``
    ``points``: ``[(accuracy, latency), ...]`` (None/NaN allowed); True where no other point is
    at least as accurate and at least as fast, and strictly better in one.

``export.predict``: ``load_model(path) -> Deployed``, ``classify(model, paths, k)``,
``image_array(pil_image, model.spec)``: classification with onnxruntime, numpy and Pillow only
(and the torch-free ``engine.model_meta`` and ``engine.preprocess``).

Command line (``finetune-tui``; registered by ``export.cli.register``)
----------------------------------------------------------------------
``finetune-tui export TARGET [--select ...] [--variants int8,fp16] [--batches 1,8,32]
[--providers cpu,cuda,trt] [--no-bench] [--threads N] [--runs DIR]``: TARGET is a grid name,
grid folder, run folder or GRID/RUN_ID. Exit 0 all ok, 1 an export failed or missed parity,
2 user error.

``finetune-tui predict MODEL.onnx IMAGE... [--top-k 3] [--json] [--provider cpu]``.
"""
