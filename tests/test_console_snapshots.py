"""SVG snapshots of the console's screens at several terminal sizes, with deterministic data: a
fake backend serving fixed snapshots and a fixed clock, so nothing depends on timing.

At every size the header is one line, the footer whole, and no table is cut mid-column: columns
drop by priority, one flexible column clips at a word, and the panels stack.

Regenerate after an intended change: python -m pytest tests/test_console_snapshots.py --snapshot-update
"""
from __future__ import annotations

import pytest

from symphony.console.app import SymphonyApp
from symphony.console.screens import DetailScreen, WorkerScreen
from tests.console_fakes import FakeBackend, fixed_clock
from tests.console_helpers import until

SIZES = [(80, 24), (120, 40), (160, 48), (200, 60)]
IDS = [f"{w}x{h}" for w, h in SIZES]


def smallest_quick(sizes):
    """The sizes as parameters, all but the smallest in the slow tier (the quick tier keeps 80x24)."""
    return [pytest.param(size, id=f"{size[0]}x{size[1]}", marks=() if i == 0 else pytest.mark.slow)
            for i, size in enumerate(sizes)]


def make_app() -> SymphonyApp:
    return SymphonyApp(FakeBackend(), refresh=0.2, clock=fixed_clock)


async def two_polls(pilot) -> None:
    await until(pilot, lambda: pilot.app.poller.polls >= 2 and pilot.app.snapshot is not None, message="two polls")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=IDS)
def test_main_screen(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=two_polls)


@pytest.mark.parametrize("size", smallest_quick(SIZES))
def test_detail_screen(snap_compare, size):
    async def open_detail(pilot) -> None:
        await two_polls(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.detail is not None,
                    message="the detail screen to draw")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_detail)


@pytest.mark.parametrize("size", smallest_quick([(80, 24), (120, 40), (200, 60)]))
def test_worker_screen(snap_compare, size):
    async def open_worker(pilot) -> None:
        await two_polls(pilot)
        workers = pilot.app.main_screen.query_one("#workers")
        workers.focus()
        workers.move_cursor(row=4)  # win-vm0-0-a1b2c3, busy
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, WorkerScreen) and pilot.app.screen.source is not None,
                    message="the worker screen to draw")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=size, run_before=open_worker)


@pytest.mark.slow
def test_main_screen_filtered_and_sorted(snap_compare):
    async def filter_and_sort(pilot) -> None:
        await two_polls(pilot)
        await pilot.press("slash", *"block7", "enter", "s", "s", "s", "s")  # sorted by failed
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(160, 48), run_before=filter_and_sort)
