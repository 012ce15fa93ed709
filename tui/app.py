"""The finetune-tui application: wiring only. Screens live in ``tui/screens``, widgets in ``tui/widgets``.

The app reads the run store and nothing else: training runs in detached
processes, so quitting (``q``, Ctrl-C) or losing the SSH connection leaves
every grid running, and any number of TUIs can watch one store.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import get_current_worker

from engine.settings import SettingsError, load_settings
from engine.store import default_root
from tui.actions import ActionError, Child, StoreActions
from tui.messages import ActionDone, ChildStarted, ReaderFailed, StoreChanged
from tui.screens.compare import CompareScreen
from tui.screens.confirm import ConfirmScreen
from tui.screens.detail import DetailScreen
from tui.screens.help import HelpScreen
from tui.screens.latency import LatencyScreen
from tui.screens.runs import RunsScreen
from tui.screens.study import StudyScreen
from tui.store_watcher import StoreSnapshot, StoreWatcher
from tui.widgets.runs_table import RunsTable

POLL_INTERVAL = 0.3  # seconds between store scans; events show within one interval
CHILD_POLL = 0.5  # seconds between checks whether an export or report child has finished
# not offered in the command palette: quit is Textual's own entry; Textual's screen.copy_text claims ctrl+c,
# which quits here (the palette showed "Copy selected text (key: ^c)")
HIDDEN = ("quit", "screen.copy_text")
FIRST_ROWS_BUDGET = 0.1  # seconds the first scan may spend loading runs before the rows so far are shown


class FinetuneApp(App[int]):
    """Live view of a run store."""

    CSS_PATH = "app.tcss"
    TITLE = "finetune-tui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("question_mark", "help", "Help", key_display="?", id="app.help"),
        Binding("f1", "help", "Help", show=False, id="app.help_f1"),
        Binding("ctrl+c", "quit", "Quit", show=False, id="app.quit_ctrl_c"),
    ]

    def __init__(
        self,
        runs_root: str | Path | None = None,
        grid: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = POLL_INTERVAL,
        actions: StoreActions | None = None,
        study: str | None = None,
        theme: str | None = None,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        # the user's settings file (engine.settings): checked here so a typo is one line, not a blank screen
        check_look(theme, keymap, self.available_themes)
        if theme:
            self.theme = theme
        if keymap:
            self.set_keymap(keymap)
        self.runs_root = Path(runs_root) if runs_root is not None else default_root()
        self.start_grid_name = grid
        self.start_study = study  # open the study screen on this study
        self.clock = clock
        self.poll_interval = poll_interval
        self.actions = actions or StoreActions(self.runs_root)
        self.snapshot: StoreSnapshot | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # -- wiring ---------------------------------------------------------------------

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(grid=self.start_grid_name or ""))
        if self.start_study:
            self.push_screen(StudyScreen(self.start_study))
        self.watch_store()

    def on_unmount(self) -> None:
        self._stop.set()
        self._wake.set()

    @work(thread=True, exit_on_error=False, group="store", exclusive=True, name="store watcher")
    def watch_store(self) -> None:
        """Poll the store for as long as the app runs; post a snapshot whenever it changed."""
        worker = get_current_worker()
        watcher = StoreWatcher(self.runs_root, clock=self.clock)
        while not (worker.is_cancelled or self._stop.is_set()):
            try:
                # the first scan of a large store shows what it read in FIRST_ROWS_BUDGET, the next one the rest
                snapshot = watcher.poll(budget=FIRST_ROWS_BUDGET if watcher.snapshot is None else None)
            except Exception as exc:  # a reader bug must not freeze the view: say so, start over
                self.post_message(ReaderFailed("store watcher", f"{type(exc).__name__}: {exc}"))
                watcher = StoreWatcher(self.runs_root, clock=self.clock)
                snapshot = None
                self._stop.wait(self.poll_interval * 4)
            if snapshot is not None:
                self.post_message(StoreChanged(snapshot))
            if not watcher.pending:  # still loading a large store: go on at once
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    async def run_action(self, action, default_namespace=None) -> bool:
        # a key read after `q`, while the app closes: a screen pushed now would mount into a dying app and
        # fail in its on_mount (NoMatches), turning a clean quit into a traceback
        if self._exit:
            return True
        return await super().run_action(action, default_namespace)

    def rescan(self) -> None:
        """Scan the store now instead of at the next tick (after an action)."""
        self._wake.set()

    @on(StoreChanged)
    def _store_changed(self, message: StoreChanged) -> None:
        self.snapshot = message.snapshot
        for screen in self.screen_stack:
            screen.post_message(StoreChanged(message.snapshot))

    @on(ReaderFailed)
    def _reader_failed(self, message: ReaderFailed) -> None:
        self.notify(message.error.splitlines()[0], title=f"{message.where} failed; retrying", severity="error")

    # -- store actions, run off the UI thread -----------------------------------------------

    def confirm_cancel_run(self, run) -> None:
        """Ask, then cancel ``run`` (a row of the runs table or the detail screen's run)."""
        if not run.cancellable:
            self.notify(f"{run.key} is {run.status}; only running or queued runs can be cancelled", title="cancel")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_store_action(f"asked {run.key} to stop", self.actions.cancel_run, run.path)

        detail = ("It will not start." if run.status == "queued" else
                  "Its worker stops at its next step, keeping the last checkpoint.")
        self.push_screen(ConfirmScreen(f"Cancel run [b]{run.key}[/b]?",
                                       f"{detail} Resuming the grid (R) runs it again."), confirmed)

    @work(thread=True, exit_on_error=False, group="actions")
    def run_store_action(self, what: str, fn: Callable[..., object], *args, failed: str = "",
                         then: Callable[[], None] | None = None, **kwargs) -> None:
        """Run ``fn`` in a thread; report the outcome as an :class:`ActionDone` (``failed``: its title on
        failure); ``then`` runs on the UI thread after a success."""
        try:
            fn(*args, **kwargs)
        except ActionError as exc:
            self.post_message(ActionDone(what, error=str(exc), failed=failed))
        except Exception as exc:  # an engine bug must not take the TUI down
            self.post_message(ActionDone(what, error=f"{type(exc).__name__}: {exc}".splitlines()[0], failed=failed))
        else:
            if then is not None:
                self.call_from_thread(then)
            self.post_message(ActionDone(what))

    @work(thread=True, exit_on_error=False, group="children")
    def run_child(self, what: str, start: Callable[..., Child], *args) -> None:
        """Start a CLI child (``start(*args)``), wait for it, report how it went; quitting leaves it running."""
        try:
            child = start(*args)
        except ActionError as exc:
            self.post_message(ActionDone(what, error=str(exc)))
            return
        except Exception as exc:  # cannot start: no such Python, unwritable grid folder
            self.post_message(ActionDone(what, error=f"{type(exc).__name__}: {exc}".splitlines()[0]))
            return
        self.post_message(ChildStarted(what, child.log))
        while not child.finished():
            if self._stop.wait(CHILD_POLL):
                return  # the TUI is closing; the child goes on in its own session
        try:
            message = child.outcome()
        except ActionError as exc:
            self.post_message(ActionDone(what, error=str(exc), path=child.log))
        else:
            self.post_message(ActionDone(message, path=child.log))

    @on(ChildStarted)
    def _child_started(self, message: ChildStarted) -> None:
        self.notify(f"{message.what}… log: {message.log}", title="started", timeout=8)

    @on(ActionDone)
    def _action_done(self, message: ActionDone) -> None:
        if message.error:
            self.notify(message.error, title=message.failed or f"{message.what} failed", severity="error",
                        timeout=10)
        else:
            self.notify(message.what, title="done")
        self.rescan()

    # -- global actions ------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.binding_sections()))

    @classmethod
    def binding_sections(cls) -> list[tuple[str, list[Binding]]]:
        """Every screen's keys, read from their BINDINGS so the help never goes stale."""

        def keyed(items) -> list[Binding]:
            return [b for b in items if isinstance(b, Binding)]

        palette = Binding(cls.COMMAND_PALETTE_BINDING, "command_palette", "Command palette (finds every action)")
        return [
            ("Everywhere", keyed(cls.BINDINGS) + [palette]),
            ("Runs", keyed(RunsTable.BINDINGS) + keyed(RunsScreen.BINDINGS)),
            ("Run detail", keyed(DetailScreen.BINDINGS)),
            ("Compare", keyed(CompareScreen.BINDINGS)),
            ("Latency", keyed(LatencyScreen.BINDINGS)),
            ("Study", keyed(StudyScreen.BINDINGS)),
        ]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette offers every keyed action of the current screen, with its key."""
        yield from super().get_system_commands(screen)
        seen: set[str] = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.description or binding.system or binding.action in seen or binding.action in HIDDEN:
                continue
            seen.add(binding.action)
            key = self.get_key_display(binding)
            yield SystemCommand(binding.description, f"{binding.tooltip or binding.description}  (key: {key})",
                                partial(self.run_action, binding.action, active.node))


def binding_ids() -> dict[str, tuple[str, str]]:
    """Every key binding that a settings file's [keymap] can remap: id -> (default keys, description)."""
    out: dict[str, tuple[str, str]] = {}
    for _, bindings in FinetuneApp.binding_sections():
        for b in bindings:
            if b.id and b.id not in out:
                out[b.id] = (b.key, b.description)
    return out


def check_look(theme: str | None, keymap: dict[str, str] | None, themes: Iterable[str] | None = None) -> None:
    """A settings file's theme and keymap as the TUI takes them (``themes``: the app's, default the built-in
    ones); SettingsError naming the first that isn't (``finetune-tui settings`` says the same)."""
    if theme and theme not in (themes if themes is not None else theme_names()):
        raise SettingsError(f"theme {theme!r} is not a Textual theme; choose from {', '.join(theme_names())}")
    unknown = sorted(set(keymap or {}) - set(binding_ids()))
    if unknown:
        raise SettingsError(f"keymap: no key binding has the id {unknown[0]!r}; "
                            "`finetune-tui settings --keys` lists them")


def theme_names() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    return sorted(BUILTIN_THEMES)


def run_app(runs_root: Path, grid: str | None = None, study: str | None = None) -> int:
    """Open the TUI on a run store (optionally on one grid, or on a study's screen), with the settings file's
    theme and keymap."""
    settings = load_settings()
    try:
        app = FinetuneApp(runs_root, grid, study=study, theme=settings.theme, keymap=settings.keymap)
    except SettingsError as exc:
        raise SettingsError(f"settings file {settings.path}: {exc}") from None
    result = app.run()
    return result if isinstance(result, int) else (app.return_code or 0)
