"""The start dialog (n on the runs screen): the grid name follows the chosen source, and it fits 80x24."""

from __future__ import annotations

from textual.widgets import Input

from tests.tui_fixtures import make_app, screen_text, store_finished, until
from tui.screens.runs import RunsScreen
from tui.screens.start_grid import StartGridScreen

GRID_TOML = 'name = "{name}"\ndatasets = ["digits"]\nbackbones = ["test_efficientnet"]\nstrategies = ["full"]\n'


def grid_file(tmp_path, name: str):
    path = tmp_path / f"{name}.toml"
    path.write_text(GRID_TOML.format(name=name))
    return path


async def open_dialog(pilot, app) -> StartGridScreen:
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.snapshot is not None)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, StartGridScreen))
    return app.screen


async def to_file_option(pilot, screen: StartGridScreen) -> None:
    await pilot.press("end", "enter")  # the last choice: TOML grid file…, and the focus to its path box
    await until(pilot, lambda: screen.focused is screen.query_one("#start-file"))


async def test_ctrl_s_on_a_toml_file_names_the_grid_after_the_file(tmp_path):
    store = store_finished(tmp_path / "runs")
    g5 = grid_file(tmp_path, "g5")
    app = make_app(store.root)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_dialog(pilot, app)
        assert screen.query_one("#start-name", Input).value == "recommended"  # the first preset's name
        await to_file_option(pilot, screen)
        name = screen.query_one("#start-name", Input)
        assert (name.value, name.placeholder) == ("", "the TOML file's own name")  # not the preset's name
        await pilot.press(*str(g5), "ctrl+s")  # no Enter in the path box
        await until(pilot, lambda: app.actions.calls != [])
        assert app.actions.calls == [("start", "", str(g5), "g5")]


async def test_the_name_follows_the_file_but_a_typed_name_is_kept(tmp_path):
    store = store_finished(tmp_path / "runs")
    g5, g6 = grid_file(tmp_path, "g5"), grid_file(tmp_path, "g6")
    (store.root / "g6").mkdir()
    app = make_app(store.root)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await open_dialog(pilot, app)
        await to_file_option(pilot, screen)
        await pilot.press(*str(g5), "enter")
        assert screen.query_one("#start-name", Input).value == "g5"
        path = screen.query_one("#start-file", Input)
        path.value = str(g6)  # another file after Enter: its name (a free one), not g5's
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.actions.calls != [])
        assert app.actions.calls == [("start", "", str(g6), "g6-2")]

        screen = await open_dialog(pilot, app)
        screen.query_one("#start-name", Input).value = "mine"
        await to_file_option(pilot, screen)
        assert screen.query_one("#start-name", Input).value == "mine"  # typed by the user: kept
        await pilot.press(*str(g5), "ctrl+s")
        await until(pilot, lambda: len(app.actions.calls) == 2)
        assert app.actions.calls[1] == ("start", "", str(g5), "mine")


async def test_the_dialog_fits_80x24(tmp_path):
    store = store_finished(tmp_path / "runs")
    app = make_app(store.root)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_dialog(pilot, app)

        def shown(*widgets: str) -> None:  # each one whole, inside the dialog, with no scrolling
            dialog = screen.query_one("#start").region
            for widget in widgets:
                region = screen.query_one(widget).region
                assert region.height >= 3 and dialog.contains_region(region), (widget, region, dialog)

        await pilot.pause(0.1)
        shown("#start-source", "#start-name", "#start-go", "#start-back")
        await to_file_option(pilot, screen)
        await pilot.pause(0.1)
        shown("#start-file", "#start-name", "#start-go", "#start-back")
        assert "Start (ctrl+s)" in screen_text(app)
        await pilot.click("#start-back")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen))
