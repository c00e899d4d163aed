"""The console's pure parts: formatting, throughput/ETA, CPU history, the poller's rhythm, and
the table diffing (rows updated in place, never cleared)."""
from __future__ import annotations

import asyncio
import dataclasses

import pytest
from textual.app import App

from symphony.console import fmt
from symphony.console.history import HEARTBEATS, HeartbeatCpu, QueueRates, pool_cpu
from symphony.console.panels.queues import QueuesPanel
from symphony.console.poller import Poller
from symphony.console.sources import MainSource
from symphony.engine import QueueStatus, Snapshot
from tests.console_fakes import T0, snapshot
from tests.console_helpers import until


def test_formatting():
    assert fmt.age(None) == "–" and fmt.age(0.44) == "0.4s" and fmt.age(42) == "42s" and fmt.age(125) == "2m05s"
    assert fmt.age(7200) == "2.0h"
    assert fmt.duration(0) == "0s" and fmt.duration(3725) == "1h02m" and fmt.duration(None) == "–"
    assert fmt.size(48_000_000) == "46M" and fmt.size(None) == "–"
    assert fmt.rate(None) == "–" and fmt.rate(12) == "12.0/min" and fmt.rate(141.2) == "141/min"
    assert fmt.join_counts([("s1", 4), ("s2", 0), ("s3", 1)]) == "s1 4, s3 1"


def test_one_formatting_module_for_both_front_ends():
    import pytest

    from symphony.engine import ConfigError

    assert fmt.parse_duration("90") == 90 and fmt.parse_duration("15m") == 900 and fmt.parse_duration("2d") == 172800
    assert fmt.parse_duration(None, 3600.0) == 3600.0
    with pytest.raises(ConfigError, match="'soon' is not a duration"):
        fmt.parse_duration("soon")
    assert fmt.bar(0, 10, 10) == "░" * 10 and fmt.bar(10, 10, 10) == "█" * 10
    assert fmt.bar(1, 1000, 10).startswith("█") and fmt.bar(999, 1000, 10).endswith("░")  # never 0 or full early
    assert fmt.fraction(999, 1000) == "99%" and fmt.fraction(28, 24) == "100%"
    from symphony.console.commands import metrics, status  # the CLI prints with the same module

    assert metrics.fmt is fmt and status.fmt is fmt


def test_columns_drop_by_priority_and_flexible_ones_share_the_rest():
    from rich.text import Text

    from symphony.console.panels.base import Column, clip, fit

    columns = (Column("name", "name", flex=True, min_width=6), Column("a", "a", priority=2),
               Column("b", "b", priority=1), Column("c", "c"))
    widths = (30, 10, 10, 10)
    assert fit(columns, widths, 80) == ((0, 1, 2, 3), ())  # everything fits
    assert fit(columns, widths, 60) == ((0, 1, 2, 3), ((0, 22),))  # the flexible column shrinks first
    shown, sized = fit(columns, widths, 40)
    assert shown == (0, 2, 3) and sized == ((0, 14),)  # then the highest priority number drops
    assert fit(columns, widths, 20)[0] == (0, 3)  # priority 0 always stays
    assert str(clip(Text("detection:row-131@block7-2026-06-01"), 22)) == "detection:row-131@…"
    assert str(clip(Text("exit code 2: frames.bin not found"), 20)) == "exit code 2:…"
    assert str(clip(Text("short"), 20)) == "short"


def test_sparkline_buckets_take_the_peak_and_show_gaps():
    points = [(0, 0.0), (10, 100.0), (15, 20.0), (35, 50.0)]
    line = fmt.sparkline(points, start=0, end=40, width=4)
    assert len(line) == 4
    assert line[0] == "▁" and line[1] == "█" and line[2] == " " and line[3] in "▄▅"


def queue(completed: int, **kw) -> QueueStatus:
    return QueueStatus(role="s1", session="x", completed=completed, **kw)


def snap(t: float, *queues: QueueStatus, items: int = 100) -> Snapshot:
    from symphony.engine import SessionStatus

    return Snapshot(taken_at=t, redis="r", queues=queues,
                    sessions=(SessionStatus(name="x", state="active", pipeline="p", stages=("s1",), items=items,
                                            created=0, file=""),))


def test_throughput_over_the_last_minute_and_eta():
    rates = QueueRates()
    rates.update(snap(1000, queue(0)))
    assert rates.per_minute("s1:x") is None  # one sample: unknown, not zero
    rates.update(snap(1001, queue(0)))
    assert rates.per_minute("s1:x") is None  # less than 2 s of data
    for t in range(2, 121):
        rates.update(snap(1000 + t, queue(t // 2)))  # one completion every 2 s: 30/min
    assert abs(rates.per_minute("s1:x") - 30.0) < 1.0
    flow = rates.flows(snap(1120, queue(60)))["s1:x"]
    assert flow.remaining == 40 and abs(flow.eta_s - 80) < 3
    done = rates.flows(snap(1120, queue(60, failed=30, cancelled=10)))["s1:x"]
    assert done.done and done.eta_s == 0
    rates.update(snap(1121, queue(0)))  # counters reset (session re-created): start over
    assert rates.per_minute("s1:x") is None


def test_cpu_from_heartbeats_is_one_value_per_host_and_keeps_an_hour():
    snap0 = snapshot(T0)
    current = pool_cpu(snap0)
    # windows: win-vm0 (81, reported by two workers, counted once) and win-vm1 (no figure); linux: lnx-vm0 96 (lnx-vm2 is dead)
    assert current["windows"] == (81.0, 2) and current["linux"] == (96.0, 1)
    cpu = HeartbeatCpu(window_s=3600)
    for i in range(0, 4000, 100):
        series = cpu.update(dataclasses.replace(snap0, taken_at=T0 + i))
    linux = next(s for s in series if s.name == "linux")
    assert linux.source == HEARTBEATS and linux.current == 96.0 and linux.instances == 1
    assert linux.points[0][0] >= T0 + 3900 - 3600 and len(linux.points) == 37


def test_table_is_diffed_not_cleared():
    class Host(App):
        def compose(self):
            yield QueuesPanel(id="queues")

    async def scenario():
        app = Host()
        async with app.run_test(size=(160, 30)) as pilot:
            panel = app.query_one(QueuesPanel)

            def update_data(snap):  # the two halves, as a poll runs them
                data = QueuesPanel.prepare(MainSource(snap), panel.view_settings())
                return panel.draw(data)

            s0 = snapshot(T0)
            await update_data(s0)
            table = panel.table
            assert table.row_count == 8
            table.move_cursor(row=2)
            selected = panel.cursor_key()
            calls = {"add": 0, "remove": 0, "clear": 0, "update": 0}
            for name in calls:
                original = getattr(table, {"add": "add_row", "remove": "remove_row", "clear": "clear",
                                           "update": "update_cell"}[name])

                def spy(*a, _o=original, _n=name, **k):
                    calls[_n] += 1
                    return _o(*a, **k)
                setattr(table, {"add": "add_row", "remove": "remove_row", "clear": "clear",
                                "update": "update_cell"}[name], spy)
            await update_data(s0)  # same data: nothing touched
            assert calls == {"add": 0, "remove": 0, "clear": 0, "update": 0}
            s1 = snapshot(T0 + 30)  # a few counters moved
            await update_data(s1)
            assert calls["clear"] == 0 and calls["add"] == 0 and calls["remove"] == 0 and 0 < calls["update"] < 20
            await update_data(dataclasses.replace(s1, queues=s1.queues[:4]))  # a session went away
            assert calls["remove"] == 4 and calls["clear"] == 0
            assert panel.cursor_key() == selected  # the selection stayed on its row
            panel.sort_by("queued")  # redrawn by a worker, off the key handler
            await until(pilot, lambda: [k.split(":")[0] for k in panel.keys()][:2] == ["rvm", "detection"],
                        message="the sorted order")
            assert panel.cursor_key() == selected

    asyncio.run(scenario())


def test_the_next_poll_is_armed_only_after_the_last_one_was_drawn():
    import threading

    class Host(App):
        pass

    state = {"running": 0, "max": 0, "draws": 0, "failures": 0}
    gate = threading.Event()
    lock = threading.Lock()

    def fetch():
        with lock:
            state["running"] += 1
            state["max"] = max(state["max"], state["running"])
        gate.wait(5)  # a slow Redis
        with lock:
            state["running"] -= 1
        if state["draws"] == 2:
            raise ConnectionError("Redis went away")
        return 1

    def draw(_):
        state["draws"] += 1

    def failed(_):
        state["failures"] += 1

    async def scenario():
        app = Host()
        async with app.run_test() as pilot:
            poller = Poller(app, fetch, draw, failed, interval=0.01)
            poller.start()
            await until(pilot, lambda: state["running"] == 1, message="the first fetch")
            await pilot.pause(0.2)  # many intervals pass while the fetch is stuck
            assert state["max"] == 1 and state["draws"] == 0
            gate.set()
            await until(pilot, lambda: state["failures"] >= 1, message="a failure")
            assert poller.next_delay >= 0.25  # backs off after a failure
            assert state["max"] == 1  # never two fetches at once
            poller.stop()

    asyncio.run(scenario())


def test_scale_sets_come_from_the_engine_with_a_live_now_and_fall_back_to_heartbeats():
    from symphony.console.backend import Backend
    from symphony.engine import ScaleSetCpu

    class StubEngine:
        display = "redis://x"
        series: tuple = ()
        fail: Exception | None = None

        def scale_set_cpu(self, window_s):
            if self.fail:
                raise self.fail
            return self.series

    eng = StubEngine()
    backend = Backend(eng)  # type: ignore[arg-type]
    snap0 = snapshot(T0)
    # nothing stored yet (a fleet's first 30 s): the console's own figures, from the snapshot
    got = {s.name: s for s in backend.scale_sets(snap0)}
    assert got["linux"].source == HEARTBEATS and got["linux"].current == 96.0
    # stored series: Azure as stored; heartbeat series keep their history but show this second's figure
    eng.series = (ScaleSetCpu("vmss-win", "azure monitor", 55.0, ((T0 - 60, 50.0), (T0, 55.0)), 3),
                  ScaleSetCpu("linux", HEARTBEATS, 10.0, ((T0 - 30, 10.0),), 1))
    backend._engine_cpu = None  # noqa: SLF001 - skip the refresh interval
    got = {s.name: s for s in backend.scale_sets(snap0)}
    assert got["vmss-win"].current == 55.0 and got["vmss-win"].instances == 3
    # the stored points before the console's own, then the console's (one per snapshot)
    assert got["linux"].current == 96.0 and got["linux"].points == ((T0 - 30, 10.0), (T0, 96.0))
    # reading the series fails (not a connection problem): the heartbeat figures, no crash
    eng.fail, backend._engine_cpu = RuntimeError("NOPERM"), None  # noqa: SLF001
    got = {s.name: s for s in backend.scale_sets(snap0)}
    assert set(got) == {"linux", "windows"} and all(s.source == HEARTBEATS for s in got.values())


@pytest.mark.slow
def test_ten_thousand_queues_draw_a_bounded_table():
    """Drawing costs the same at 10 queues or 10,000: the table holds at most MAX_ROWS rows (the
    first in the current order), the title says so, and a filter reaches every queue."""
    from symphony.console.app import SymphonyApp
    from symphony.console.backend import PollResult
    from symphony.console.panels.queues import MAX_ROWS
    from symphony.engine import SessionStatus

    sessions = 2500
    snap10k = Snapshot(
        taken_at=T0, redis="r",
        queues=tuple(QueueStatus(role=s, session=f"s{i:05d}", queued=i % 97, pool="p")
                     for i in range(sessions) for s in ("a", "b", "c", "d")),
        sessions=tuple(SessionStatus(name=f"s{i:05d}", state="active", pipeline="p", stages=("a", "b", "c", "d"),
                                     items=100, created=0, file="") for i in range(sessions)))

    class Big:
        display = "redis://x"

        def poll(self, page=None):
            return PollResult(snap10k)

        def close(self):
            pass

    async def scenario():
        app = SymphonyApp(Big(), refresh=0.5)
        async with app.run_test(size=(160, 48)) as pilot:
            table = app.queues.table
            await until(pilot, lambda: table.row_count == MAX_ROWS, message="the first draw")
            assert f"showing the first {MAX_ROWS} of 10000" in app.queues.border_title
            sessions = app.main_screen.query_one("#sessions")
            assert sessions.row_count == MAX_ROWS and "showing the first 500" in sessions.border_title
            await pilot.press("slash", *"s02499")
            await until(pilot, lambda: table.row_count == 4, message="the filter to reach the last session")
            await pilot.press("escape", "s")  # sorted by queued: the biggest queues first
            await until(pilot, lambda: table.row_count == MAX_ROWS and app.queues.sort_key == "queued"
                        and str(table.get_row_at(0)[2]) == "96", message="the sorted view")

    asyncio.run(scenario())


def test_activity_is_a_live_tail_the_newest_event_always_shows():
    """More events than rows, new ones every poll: the first row in view is always the newest."""
    from symphony.console.app import SymphonyApp
    from symphony.console.backend import PollResult
    from symphony.engine import Event

    class Busy:
        display = "redis://x"
        polls = 0

        def poll(self, page=None):
            self.polls += 1
            t = T0 + self.polls
            events = tuple(Event(id=f"{int((t - i * 0.1) * 1000)}-0", time=t - i * 0.1, kind="completed",
                                 session="s", stage="a", item=f"i{self.polls * 100 - i}") for i in range(50))
            return PollResult(dataclasses.replace(snapshot(T0), taken_at=t, events=events))

        def close(self):
            pass

    async def scenario():
        app = SymphonyApp(Busy(), refresh=0.1)
        async with app.run_test(size=(120, 40)) as pilot:
            activity = app.main_screen.query_one("#activity")
            await until(pilot, lambda: activity.row_count == 50, message="a full activity table")
            assert activity.row_count > activity.size.height  # more events than rows
            for _ in range(3):
                polls = app.poller.polls
                await until(pilot, lambda: app.poller.polls > polls + 1, message="new events")
                items = [int(str(activity.get_row_at(i)[2]).split(":i")[1].split("@")[0])
                         for i in range(activity.row_count)]
                assert items[0] == max(items) > 100  # the newest event is the first row
                assert activity.scroll_offset.y == 0 and activity.cursor_row == 0  # and it is in view

    asyncio.run(scenario())
