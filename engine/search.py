"""A grid's ``[search]``: an Optuna study per dataset x backbone x strategy, each trial a run in the store.

The orchestrator asks ``SearchDriver`` for the next trial whenever a slot is
free; a trial is an ordinary run folder whose config has the sampled values
applied (and listed as its axes) and whose id ends in ``__tNNN``. Every epoch
event of a trial is reported to its study (the best-epoch rule's value: val
accuracy); when the pruner (median by default) says stop, the driver writes
the run's cancel request, the existing cancel path ends it, and the trial is
told PRUNED. A finished run is told its best-epoch val accuracy, a failed one
FAIL.

The run store is the study's only record: on a re-run the driver rebuilds each
study from the trial folders (finished and pruned ones are added as completed
trials; unfinished ones are resumed with their sampled values), so a killed
search resumes like any grid. ``search.json`` in the grid folder summarises the
studies (best trial and values) for people, the report and the TUI.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from engine import events as ev
from engine.config import ConfigError, GridConfig, RunConfig, _with_settings
from engine.store import GridDir, RunDir, atomic_write_json, load_run

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

PRUNED = "pruned by the search"  # the start of a pruned trial's cancel reason


def check_search(grid: GridConfig) -> None:
    """What a search grid can't be: checked before anything starts."""
    if not grid.search.enabled:
        return
    if grid.axes:
        raise ConfigError("a grid with [search] can't also have [axes]: list the values in [search.space] instead")
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("[search] needs the optuna package, which is not installed; run: pip install 'finetune-tui[search]'") from None


def distributions(space: dict) -> dict[str, "optuna.distributions.BaseDistribution"]:
    """``[search.space]`` as Optuna distributions (lists are categorical; int ranges step by 1)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, spec in space.items():
        if isinstance(spec, list):
            out[key] = CategoricalDistribution(spec)
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int):
            out[key] = IntDistribution(spec["low"], spec["high"], log=spec["log"])
        else:
            out[key] = FloatDistribution(float(spec["low"]), float(spec["high"]), log=spec["log"])
    return out


def study_key(run: RunConfig) -> str:
    return f"{run.data.dataset}/{run.model.backbone}/{run.train.strategy}"


class SearchDriver:
    """The studies of one search grid, fed by the orchestrator (``next_run``, ``observe``, ``settle``)."""

    def __init__(self, grid_dir: GridDir, grid: GridConfig):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.gdir, self.grid, self.cfg = grid_dir, grid, grid.search
        self.space = distributions(self.cfg.space)
        self.bases = {study_key(r): r for r in grid.runs()}
        self.studies: dict[str, optuna.Study] = {}
        for i, key in enumerate(self.bases):
            sampler = (optuna.samplers.TPESampler(seed=self.cfg.seed + i, n_startup_trials=self.cfg.startup_trials)
                       if self.cfg.sampler == "tpe" else optuna.samplers.RandomSampler(seed=self.cfg.seed + i))
            pruner = (optuna.pruners.MedianPruner(n_startup_trials=self.cfg.startup_trials, n_warmup_steps=0)
                      if self.cfg.pruner == "median" else optuna.pruners.NopPruner())
            self.studies[key] = optuna.create_study(study_name=key, direction="maximize", sampler=sampler,
                                                    pruner=pruner)
        self.trials: dict[str, tuple[str, optuna.trial.Trial]] = {}  # run id -> (study, live trial)
        self.created: dict[str, int] = {k: 0 for k in self.bases}
        self.next_number = 0
        self._lock = threading.Lock()
        self._rebuild()

    # --- the store is the record ------------------------------------------------

    def trial_dirs(self) -> list[tuple[RunDir, RunConfig]]:
        out = []
        for rd in self.gdir.run_dirs():
            try:
                cfg = rd.config()
            except Exception:  # an unreadable folder isn't a trial we can use
                continue
            if cfg.trial >= 0 and study_key(cfg) in self.bases:
                out.append((rd, cfg))
        return sorted(out, key=lambda item: item[1].trial)

    def _rebuild(self) -> None:
        """Studies from the trial folders: settled ones told, unfinished ones asked again with their values."""
        import optuna
        from optuna.trial import TrialState

        for rd, cfg in self.trial_dirs():
            key = study_key(cfg)
            self.created[key] += 1
            self.next_number = max(self.next_number, cfg.trial + 1)
            params = {k: v for k, v in cfg.axes if k in self.space}
            state, value, steps = self._outcome(rd)
            study = self.studies[key]
            if state is None:  # not settled: the orchestrator resumes it; it reports to a trial with its values
                study.enqueue_trial(params, skip_if_exists=False)
                self.trials[rd.run_id] = (key, study.ask(self.space))
                continue
            study.add_trial(optuna.trial.create_trial(
                params=params, distributions=self.space, value=value if state == TrialState.COMPLETE else None,
                state=state, intermediate_values=steps))

    def _outcome(self, rd: RunDir):
        """(TrialState or None while unsettled, value, {epoch: val acc}) of a trial's run folder."""
        from optuna.trial import TrialState

        s = load_run(rd).summary
        steps = {i: v for i, v in enumerate(s.val_acc_history, 1)}
        if s.status == "done" and s.best_val_acc is not None:
            return TrialState.COMPLETE, float(s.best_val_acc), steps
        if s.status == "cancelled" and s.error.startswith(PRUNED):
            return TrialState.PRUNED, None, steps
        if s.status == "failed" and s.error_kind == "user":  # a sampled config that can't train: don't retry it
            return TrialState.FAIL, None, steps
        return None, None, steps

    def is_settled(self, rd: RunDir) -> bool:
        """A pruned trial is over (not resumed like a cancelled run)."""
        s = load_run(rd).summary
        return s.status == "cancelled" and s.error.startswith(PRUNED)

    # --- the orchestrator's calls ----------------------------------------------------

    def wants_more(self) -> bool:
        return any(n < self.cfg.trials for n in self.created.values())

    def next_run(self) -> RunDir | None:
        """A new trial's run folder (config written), or None when every study has its trials."""
        with self._lock:
            key = next((k for k, n in self.created.items() if n < self.cfg.trials), None)
            if key is None:
                return None
            study = self.studies[key]
            trial = study.ask(self.space)
            values = tuple((k, _plain(trial.params[k])) for k in self.space)
            base = self.bases[key]
            run = replace(_with_settings(base, dict(values)), axes=values, trial=self.next_number)
            self.next_number += 1
            self.created[key] += 1
            rd = self.gdir.run(run.run_id)
            from engine.orchestrator import _absolute_paths

            rd.path.mkdir(parents=True, exist_ok=True)
            rd.write_config(_absolute_paths(run))
            self.gdir.write_info(self.grid, [d.run_id for d, _ in self.trial_dirs()])
            self.trials[run.run_id] = (key, trial)
            log.info("%s: trial %d of %s: %s", run.run_id, run.trial, key, dict(values))
            return rd

    def observe(self, run_id: str, event: ev.Event) -> None:
        """Report a trial's epoch to its study; ask its run to stop when the pruner says so."""
        if not isinstance(event, ev.Epoch) or run_id not in self.trials:
            return
        with self._lock:
            _, trial = self.trials[run_id]
            trial.report(event.val_acc, event.epoch)
            if trial.should_prune():
                reason = f"{PRUNED} after epoch {event.epoch} (val acc {event.val_acc:.4f} below its study's median)"
                self.gdir.run(run_id).request_cancel(reason)
                log.info("%s: %s", run_id, reason)

    def settle(self, rd: RunDir) -> None:
        """The trial's run ended: tell its study how (an unsettled end, e.g. a cancelled grid, stays open)."""
        with self._lock:
            if rd.run_id not in self.trials:
                return
            key, trial = self.trials[rd.run_id]
            state, value, _ = self._outcome(rd)
            if state is None:
                return
            from optuna.trial import TrialState

            self.studies[key].tell(trial, value if state == TrialState.COMPLETE else None, state=state)
            del self.trials[rd.run_id]
            self.write_summary()

    def write_summary(self) -> None:
        atomic_write_json(self.gdir.search_file, self.summary())

    def summary(self) -> dict[str, Any]:
        """``search.json``: per study, its trials' states and values and the best one."""
        from optuna.trial import TrialState

        out: dict[str, Any] = {"metric": "best-epoch val accuracy", "trials": self.cfg.trials, "studies": {}}
        names = {(study_key(cfg), cfg.trial): rd.run_id for rd, cfg in self.trial_dirs()}
        for key, study in self.studies.items():
            done = [t for t in study.trials if t.state == TrialState.COMPLETE]
            best = max(done, key=lambda t: t.value) if done else None
            numbers = sorted(n for (k, n) in names if k == key)
            rows = []
            for t, number in zip(study.trials, numbers):
                rows.append({"run_id": names[(key, number)], "state": t.state.name.lower(), "value": t.value,
                             "params": {k: _plain(v) for k, v in t.params.items()}})
            out["studies"][key] = {"best_run": rows[study.trials.index(best)]["run_id"] if best else None,
                                   "best_value": best.value if best else None,
                                   "best_params": {k: _plain(v) for k, v in best.params.items()} if best else None,
                                   "trials": rows}
        return out


def _plain(value: Any) -> Any:
    """numpy scalars Optuna may hand back -> plain Python (config.json, TOML, JSON)."""
    return value.item() if hasattr(value, "item") else value
