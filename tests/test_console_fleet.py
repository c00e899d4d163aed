"""The console at fleet size: the worker panel reads and shows one page (] and [ page through),
the header counts every registered worker, a hidden panel is drawn when it shows, and the main
screen's poll waits while a worker's detail covers it. A real Redis, real heartbeats."""
from __future__ import annotations

from textual.widgets import DataTable

from symphony.console.app import SymphonyApp
from symphony.console.backend import Backend
from symphony.engine import Engine, resolve_redis
from tests.console_helpers import until
from tests.test_console_app import run as run_app
from tests.test_fleet_snapshot import beat_many

WORKERS = 120


class CountingBackend(Backend):
    """The real backend, counting the main screen's polls and the worker screen's reads."""

    polls = 0
    worker_reads = 0

    def poll(self, page=None):
        CountingBackend.polls += 1
        return super().poll(page=page)

    def worker(self, worker_id):
        CountingBackend.worker_reads += 1
        return super().worker(worker_id)


def run(redis_url: str, scenario, size=(120, 40)) -> None:
    engine = Engine(resolve_redis(redis_url), socket_timeout=3.0)
    beat_many(engine, [f"w{n:04d}" for n in range(WORKERS)])
    CountingBackend.polls = CountingBackend.worker_reads = 0
    run_app(SymphonyApp(CountingBackend(engine, tasks_dir="/nonexistent"), refresh=0.2), scenario, size=size)


def ids(table: DataTable) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


def test_the_worker_panel_shows_a_page_and_pages_through(redis_url):
    async def scenario(pilot):
        app = pilot.app
        table = app.main_screen.query_one("#workers", DataTable)
        await until(pilot, lambda: table.row_count > 0, message="the first page of workers")
        size = table.row_count
        assert size < WORKERS  # a page, not the fleet
        full = app.backend.engine.snapshot()  # every worker, in the table's order
        ordered = [w.id for w in sorted(full.workers, key=lambda w: (w.pool, w.host, w.id))]
        assert ids(table) == ordered[:size]
        assert f"{WORKERS} registered" in str(table.border_title)
        assert f"{WORKERS} worker(s)" in app.header.counts
        first = ids(table)
        table.focus()
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: ids(table) and ids(table)[0] not in first, message="the next page")
        assert not set(ids(table)) & set(first)
        assert f"rows {size + 1}-" in str(table.border_title)
        assert ids(table) == ordered[size:2 * size]
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: ids(table) == first, message="the first page again")

    run(redis_url, scenario)


def test_a_hidden_panel_is_drawn_when_the_terminal_widens(redis_url):
    async def scenario(pilot):
        app = pilot.app
        side = app.main_screen.query_one("#scalesets-side", DataTable)
        below = app.main_screen.query_one("#scalesets", DataTable)
        await until(pilot, lambda: below.row_count > 0, message="the scale sets' CPU from heartbeats")
        assert side.row_count == 0  # hidden under 160 columns: not drawn
        await pilot.resize_terminal(170, 40)
        await until(pilot, lambda: side.row_count == below.row_count, message="the side panel drawn once shown")

    run(redis_url, scenario)


def test_the_main_poll_waits_while_a_worker_detail_covers_it(redis_url):
    async def scenario(pilot):
        app = pilot.app
        table = app.main_screen.query_one("#workers", DataTable)
        await until(pilot, lambda: table.row_count > 0, message="the first page of workers")
        table.focus()
        await pilot.press("enter")
        await until(pilot, lambda: CountingBackend.worker_reads >= 1, message="the worker screen's first read")
        polls = CountingBackend.polls
        reads = CountingBackend.worker_reads
        await until(pilot, lambda: CountingBackend.worker_reads >= reads + 5, message="five more worker reads")
        assert CountingBackend.polls <= polls + 1  # at most the one under way when the screen opened
        await pilot.press("escape")
        await until(pilot, lambda: CountingBackend.polls >= polls + 2, message="the main polls again")

    run(redis_url, scenario)
