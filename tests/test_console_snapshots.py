"""SVG snapshots of the console's main and detail screens, with deterministic data: a fake
backend serving fixed snapshots and a fixed clock, so nothing depends on timing.

Regenerate after an intended change: python -m pytest tests/test_console_snapshots.py --snapshot-update
"""
from __future__ import annotations

import pytest

from symphony.console.app import SymphonyApp
from symphony.console.screens import DetailScreen
from tests.console_fakes import FakeBackend, fixed_clock
from tests.console_helpers import until

SIZE = (160, 48)


def make_app() -> SymphonyApp:
    return SymphonyApp(FakeBackend(), refresh=0.2, clock=fixed_clock)


async def two_polls(pilot) -> None:
    await until(pilot, lambda: pilot.app.poller.polls >= 2 and pilot.app.snapshot is not None, message="two polls")
    await pilot.pause()


def test_main_screen(snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=two_polls)


@pytest.mark.slow
def test_detail_screen(snap_compare):
    async def open_detail(pilot) -> None:
        await two_polls(pilot)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.detail is not None,
                    message="the detail screen to draw")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=open_detail)


@pytest.mark.slow
def test_main_screen_filtered_and_sorted(snap_compare):
    async def filter_and_sort(pilot) -> None:
        await two_polls(pilot)
        await pilot.press("slash", *"block7", "enter", "s", "s", "s", "s")  # sorted by failed
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=filter_and_sort)
