"""The console against a real Redis, driven with Textual's Pilot: every action (repair modal then
confirm, initialize, export, cancel, retry, filter and sort, the detail screen, help), and the
never-freeze promise (Redis stopped while the app runs, then back)."""
from __future__ import annotations

from symphony.engine.keys import DEFAULT_KEYS as K

import asyncio
import json
from pathlib import Path

import pytest
from textual.widgets import DataTable, ProgressBar, SelectionList

from symphony.console.app import SymphonyApp
from symphony.console.backend import Backend
from symphony.console.screens import (ConfirmScreen, DetailScreen, HelpScreen, InitializeScreen, RepairScreen,
                                      WorkerScreen)
from symphony.console.screens.help import KEYS
from symphony.engine import CANCEL_EFFECT, Engine, Finish, Outcome, OutcomeKind, initialize_session, load_session, resolve_redis
from tests.console_helpers import RecordingApp, cells, text_of, until
from tests.helpers import write_pipeline, write_session

SIZE = (160, 48)
STAGES = ["s1", "s2", "s3", "s4"]
ITEMS = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture
def tasks(tmp_path) -> Path:
    folder = tmp_path / "tasks"
    (folder / "pipelines").mkdir(parents=True)
    write_pipeline(folder / "pipelines" / "four.yaml", [
        {"name": s, "pool": "p", "handler": "tests.handlers:ok", "output": "{root}/{session}/{stage}/{item}.json",
         "max_attempts": 2, "retry_backoff": 0.05} for s in STAGES])
    write_session(folder / "rep.yaml", "rep", "pipelines/four.yaml", ITEMS, root="data")
    return folder


def make_app(redis_url: str, tasks: Path, tmp_path: Path, **kwargs) -> RecordingApp:
    engine = Engine(resolve_redis(redis_url).with_client_name("symphony-tui-test"), socket_timeout=3.0)
    return RecordingApp(Backend(engine, tasks_dir=tasks), refresh=0.2, export_dir=tmp_path / "exports", **kwargs)


def run(app: SymphonyApp, scenario, size=SIZE) -> None:
    """Drive ``app`` through ``scenario`` (an async function of the Pilot) at ``size``, then close
    its backend."""
    async def main() -> None:
        try:
            async with app.run_test(size=size) as pilot:
                await scenario(pilot)
        finally:
            app.backend.close()

    asyncio.run(main())


def queue_rows(app) -> list[list[str]]:
    return cells(app.main_screen.query_one("#queues", DataTable))


async def first_poll(pilot, rows: int = 4) -> None:
    await until(pilot, lambda: len(queue_rows(pilot.app)) >= rows, message=f"{rows} queue rows")


def fail_one(engine, session: str, stage: str, error: str = "failed on purpose", stderr: str = "the tail"):
    link = engine.worker_link("w-test", [stage])
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    link.step(Finish(claimed, Outcome(OutcomeKind.FAILED, error=error, stderr=stderr), attempts=2), claim=False)
    return claimed


def test_main_screen_shows_the_live_queues(engine, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        rows = queue_rows(app)
        assert [r[0] for r in rows] == [f"{s}:rep" for s in STAGES]
        assert rows[0][2] == "6"  # queued
        head = text_of(app.header)
        assert "connected" in head and resolve_redis(redis_url).display in head
        assert "1 session(s) · 4 queue(s)" in head
        # the poll keeps going (armed after each draw), and reflects new work
        engine.enqueue("rep", "s2", [("zz", None)])
        await until(pilot, lambda: queue_rows(app)[1][2] == "1", message="the s2 queue to show 1")

    run(app, scenario)


@pytest.mark.slow
def test_repair_shows_the_plan_first_escape_cancels_enter_runs(engine, r, redis_url, tasks, tmp_path):
    spec = load_session(tasks / "rep.yaml")
    engine.register_session(spec.record(), items=len(spec.items))
    for stage, items in {"s1": ["a", "b"], "s2": ["a"]}.items():
        folder = tasks / "data" / "rep" / stage
        folder.mkdir(parents=True, exist_ok=True)
        for item in items:
            (folder / f"{item}.json").write_text("{}")
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        await pilot.press("r")
        screen = await until(pilot, lambda: isinstance(app.screen, RepairScreen) and app.screen, message="the plan")
        assert screen.plan.to_enqueue == 6
        rows = {row[0]: row for row in cells(screen.query_one("#repair-table", DataTable))}
        assert rows["s1"][1] == "4" and rows["s2"][1] == "1" and rows["s3"][1] == "1" and rows["s4"][1] == "0"
        assert "Enter enqueues these 6 task(s)" in text_of(screen.query_one("#repair-hint"))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, RepairScreen), message="the modal to close")
        assert r.llen(K.queue("s1", "rep")) == 0  # a dry run changes nothing

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RepairScreen), message="the plan again")
        await pilot.press("enter")
        note = await until(pilot, lambda: app.noted("Repair of rep"), message="the repair's notification")
        assert "6 task(s) enqueued (s1 4, s2 1, s3 1)" in note
        assert (r.llen(K.queue("s1", "rep")), r.llen(K.queue("s2", "rep")), r.llen(K.queue("s3", "rep"))) == (4, 1, 1)
        await until(pilot, lambda: queue_rows(app)[0][2] == "4", message="the queues to show the repair")

    run(app, scenario)


@pytest.mark.slow
def test_cancel_asks_first(engine, r, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), message="the question")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), message="the question to close")
        assert r.llen(K.queue("s1", "rep")) == 6
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), message="the question")
        await pilot.press("enter")
        note = await until(pilot, lambda: app.noted("Cancelled rep"), message="the cancel's notification")
        assert "6 waiting task(s) cancelled" in note
        assert r.llen(K.queue("s1", "rep")) == 0
        await until(pilot, lambda: "(cancelled)" in queue_rows(app)[0][0], message="the queues to say cancelled")

    run(app, scenario)


@pytest.mark.slow
def test_retry_failed_asks_first(engine, r, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    fail_one(engine, "rep", "s1")
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        await until(pilot, lambda: queue_rows(app)[0][6] == "1", message="the failure to show")
        await pilot.press("f")
        screen = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, message="question")
        assert "1 failed or timed-out task(s)" in screen.body
        await pilot.press("enter")
        note = await until(pilot, lambda: app.noted("queued again"), message="the retry's notification")
        assert "rep: 1 failed task(s) queued again" in note
        assert r.llen(K.queue("s1", "rep")) == 6
        await until(pilot, lambda: queue_rows(app)[0][2] == "6", message="the queue to show the retried task")

    run(app, scenario)


@pytest.mark.slow
def test_initialize_verifies_then_confirms_then_shows_progress(r, redis_url, tasks, tmp_path):
    (tasks / "bad.yaml").write_text("session: bad\npipeline: pipelines/missing.yaml\nitems: [x]\n")
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await until(pilot, lambda: app.connected, message="the first poll")
        await pilot.press("i")
        screen = await until(pilot, lambda: isinstance(app.screen, InitializeScreen) and app.screen, message="screen")
        files = screen.query_one("#init-files", SelectionList)
        assert sorted(Path(v).name for v in files.selected) == ["bad.yaml", "rep.yaml"]
        await pilot.press("v")  # both files: the bad one has a problem, nothing is enqueued
        await until(pilot, lambda: "problem" in text_of(screen.query_one("#init-status")), message="the report")
        report = text_of(screen.query_one("#init-report"))
        assert "bad.yaml" in report and "missing.yaml" in report and "✓ rep" in report
        assert r.exists(K.sessions) == 0 or r.hget(K.sessions, "rep") is None
        await pilot.press("space")  # bad.yaml is first in the list: deselect it
        assert [Path(v).name for v in files.selected] == ["rep.yaml"]
        await pilot.press("v")
        question = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, message="confirm")
        assert "rep: 6 item(s)" in question.body
        await pilot.press("enter")
        note = await until(pilot, lambda: app.noted("Initialized 1 session(s)"), message="the result")
        assert "rep: 6 enqueued for s1" in note
        assert r.llen(K.queue("s1", "rep")) == 6
        bar = screen.query_one("#init-progress", ProgressBar)
        await until(pilot, lambda: bar.progress == 6 and bar.total == 6, message="the progress bar to fill")
        await pilot.press("escape")
        await first_poll(pilot)

    run(app, scenario)


def test_export_writes_the_status_json_and_says_where(engine, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        await pilot.press("e")
        note = await until(pilot, lambda: app.noted("Snapshot exported to"), message="the export's notification")
        path = Path(note.split("Snapshot exported to ", 1)[1].split(" ")[0])
        assert path.parent == (tmp_path / "exports").resolve() and path.is_file()
        data = json.loads(path.read_text())
        assert data["schema"] == 1 and {q["role"] for q in data["queues"]} == set(STAGES)
        assert set(data) == set(app.snapshot.to_dict())

    run(app, scenario)


@pytest.mark.slow
def test_filter_and_sort_the_queues(engine, redis_url, tasks, tmp_path):
    write_session(tasks / "other.yaml", "other", "pipelines/four.yaml", ["x"], root="data")
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    initialize_session(engine, load_session(tasks / "other.yaml"))
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot, 8)
        await pilot.press("slash", "s", "1", ":")
        await until(pilot, lambda: [r[0] for r in queue_rows(app)] == ["s1:other", "s1:rep"], message="filtered")
        assert "filter “s1:”" in app.queues.border_title
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused.id == "queues"
        await pilot.press("s")  # sorted by queued, biggest first
        await until(pilot, lambda: [r[0] for r in queue_rows(app)] == ["s1:rep", "s1:other"], message="sorted")
        assert "sorted by queued ↓" in app.queues.border_title
        await pilot.press("slash", "escape")  # clears the filter
        await until(pilot, lambda: len(queue_rows(app)) == 8, message="every queue again")
        assert app.queues.filter_text == ""

    run(app, scenario)


@pytest.mark.slow
def test_detail_screen_shows_stages_failures_and_last_job(engine, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    fail_one(engine, "rep", "s1", error="exit code 2: no frames", stderr="line one\nline two\nthe last line")
    engine.job_store("rep", "s1", "b").update({"frames": 120})
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        await pilot.press("enter")
        screen = await until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.detail and app.screen,
                             message="the detail screen")
        assert screen.session == "rep"
        stages = cells(screen.query_one("#stages", DataTable))
        assert [row[0] for row in stages] == STAGES
        failures = cells(screen.query_one("#failures", DataTable))
        assert len(failures) == 1 and failures[0][1] == "s1" and "exit code 2: no frames" in failures[0][5]
        stderr = text_of(screen.query_one("#stderr"))
        assert "the last line" in stderr and "exit code 2" in stderr
        head = text_of(screen.query_one("#detail-head"))
        assert "Session rep" in head and "6 items" in head
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, DetailScreen), message="back to the main screen")

    run(app, scenario)


@pytest.mark.slow
def test_help_lists_every_key_and_the_palette_every_action(redis_url, tasks, tmp_path):
    app = make_app(redis_url, tasks, tmp_path)
    names = {"slash": "/", "question_mark": "?"}

    async def scenario(pilot):
        await pilot.press("question_mark")
        screen = await until(pilot, lambda: isinstance(app.screen, HelpScreen) and app.screen, message="help")
        listed = {row[0] for row in cells(screen.query_one("#help-table", DataTable))}
        for binding in SymphonyApp.BINDINGS:
            if binding.show:
                assert names.get(binding.key, binding.key) in listed, binding.key
        assert {k for k, _ in KEYS} == listed
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), message="help to close")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Repair session", "Initialize sessions", "Export snapshot", "Cancel session", "Retry failed tasks",
                "Detail", "Filter queues", "Keys", "Screenshot", "Quit"} <= set(titles)
        assert len(titles) == len(set(titles)), titles  # no entry twice

    run(app, scenario)


@pytest.mark.slow
def test_redis_stopped_keys_still_answer_screen_says_reconnecting_then_recovers(own_redis, tasks, tmp_path):
    engine = Engine(resolve_redis(own_redis.url))
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    engine.close()
    app = make_app(own_redis.url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        own_redis.stop()
        await until(pilot, lambda: "reconnecting" in text_of(app.header), message="the header to say reconnecting")
        head = text_of(app.header)
        assert "stale" in head and "actions that need Redis are disabled" in head
        assert app.queues.has_class("-stale") and len(queue_rows(app)) == 4  # the last data stays, marked stale
        # a key press is handled while Redis is gone (not only once it is back)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), message="help while disconnected")
        assert not app.connected and "reconnecting" in text_of(app.header)
        await pilot.press("escape")
        await pilot.press("r")
        await until(pilot, lambda: app.noted("repair is disabled until it answers"), message="the disabled notification")
        assert not isinstance(app.screen, RepairScreen)
        own_redis.start()
        await until(pilot, lambda: "● connected" in text_of(app.header), timeout=30, message="the reconnection")
        assert not app.queues.has_class("-stale")
        assert app.noted("Redis answers again")
        await pilot.press("r")  # actions work again
        await until(pilot, lambda: isinstance(app.screen, RepairScreen), message="the repair plan after recovery")

    run(app, scenario)


def test_password_never_shown(tmp_path, tasks):
    from symphony.engine import EmbeddedRedis

    secret = "s3cret-Passw0rd"
    server = EmbeddedRedis(directory=str(tmp_path / "redis"), password=secret)
    (tmp_path / "redis").mkdir()
    server.start()
    try:
        url = f"redis://:{secret}@127.0.0.1:{server.port}/0"
        app = make_app(url, tasks, tmp_path)

        async def scenario(pilot):
            await until(pilot, lambda: app.connected, message="the first poll")
            await pilot.press("e")
            note = await until(pilot, lambda: app.noted("Snapshot exported to"), message="the export")
            head = text_of(app.header)
            assert secret not in head and "***" in head
            path = Path(note.split("Snapshot exported to ", 1)[1].split(" ")[0])
            assert secret not in path.read_text()
            assert not any(secret in n for n in app.notes)
            assert secret not in app.export_screenshot()

        run(app, scenario)
    finally:
        server.close()


@pytest.mark.slow
def test_redis_paused_keys_still_answer_then_it_resumes(own_redis, tasks, tmp_path):
    """A hung Redis (SIGSTOP: sockets stay open, nothing answers) is the harder case: the poll
    thread blocks until its socket timeout, and the UI must not notice."""
    engine = Engine(resolve_redis(own_redis.url))
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    engine.close()
    app = make_app(own_redis.url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        own_redis.pause()
        try:
            await until(pilot, lambda: app.poller.running, message="a poll to hang")
            polls = app.poller.polls
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), message="help while hung")
            # the key was handled while that very poll was still blocked on the hung server
            assert app.poller.running and app.poller.polls == polls
            await pilot.press("escape", "s")
            assert app.queues.sort_key == "queued"
            await until(pilot, lambda: "reconnecting" in text_of(app.header), timeout=20,
                        message="the poll to time out and the header to say reconnecting")
        finally:
            own_redis.resume()
        await until(pilot, lambda: "● connected" in text_of(app.header), timeout=30, message="the recovery")

    run(app, scenario)


@pytest.mark.slow
def test_each_poll_reclaims_the_tasks_of_dead_workers(engine, r, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    link = engine.worker_link("gone-0-abc", ["s1"])
    link.beat(0.5, 1.0, {"host": "vanished", "pool": "p"})  # the console polls (0.2 s) well within 2 beats
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    assert claimed and r.llen(K.queue("s1", "rep")) == 5
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        note = await until(pilot, lambda: app.noted("lost worker gone-0-abc"), message="the console to reclaim")
        assert "reclaimed 1 task(s)" in note
        assert r.llen(K.queue("s1", "rep")) == 6
        await until(pilot, lambda: queue_rows(app)[0][2] == "6", message="the queue to show the reclaimed task")

    run(app, scenario)


def test_cancel_dialog_says_what_each_button_does(engine, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await first_poll(pilot)
        await pilot.press("c")
        screen = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, message="question")
        labels = [str(b.label) for b in screen.query("Button")]
        assert labels == ["Yes, cancel the session (Enter)", "No, keep it running (Esc)"]
        assert sum("Cancel" in label or "cancel" in label for label in labels) == 1
        assert screen.body == CANCEL_EFFECT  # the words of the CLI's help and docs/sessions.md
        await pilot.press("escape")

    run(app, scenario)


def test_palette_screenshot_saves_the_screen_and_says_where(redis_url, tasks, tmp_path):
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        await until(pilot, lambda: app.connected, message="the first poll")
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Screenshot")
        command.callback()
        note = await until(pilot, lambda: app.noted("Screenshot saved to"), message="the screenshot")
        path = Path(note.split("Screenshot saved to ", 1)[1])
        assert path.parent == (tmp_path / "exports").resolve()
        svg = path.read_text()
        assert svg.startswith("<svg") and "Queues" in svg and "Workers" in svg

    run(app, scenario)


def test_enter_on_a_worker_shows_its_tasks_and_host(engine, redis_url, tasks, tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    link = engine.worker_link("w-detail-0-abc", ["s1"])
    link.beat(30.0, 60.0, {"host": "vm-7", "pool": "p", "host_cpu": 37.0})
    claimed = None
    for _ in range(5):
        claimed = claimed or link.step().claimed
    link.step(Finish(claimed, Outcome(OutcomeKind.FAILED, error="exit code 3: no frames", stderr=""), attempts=2), claim=False)
    app = make_app(redis_url, tasks, tmp_path)

    async def scenario(pilot):
        workers = app.main_screen.query_one("#workers", DataTable)
        await until(pilot, lambda: workers.row_count == 1, message="the worker's row")
        workers.focus()
        await pilot.press("enter")
        screen = await until(pilot, lambda: isinstance(app.screen, WorkerScreen) and app.screen.source and app.screen,
                             message="the worker screen")
        rows = await until(pilot, lambda: cells(screen.query_one("#tasks", DataTable)), message="its recent tasks")
        assert "✗ failed" in rows[0][1] and claimed.task.item in rows[0][2] and "exit code 3" in rows[0][5]
        head = text_of(screen.query_one("#worker-head"))
        assert "Worker w-detail-0-abc" in head and "vm-7" in head
        host = {row[0]: row for row in cells(screen.query_one("#host", DataTable))}
        assert host["CPU"][1] == "37%"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, WorkerScreen), message="back to the main screen")

    run(app, scenario)


def test_p_pauses_after_confirming_and_the_rows_show_paused_priority_and_limits(engine, r, redis_url, tasks,
                                                                                tmp_path):
    initialize_session(engine, load_session(tasks / "rep.yaml"))
    engine.set_priority("rep", 5)
    engine.set_stage_limits("s1", max_running=3, rate="120/min")
    app = make_app(redis_url, tasks, tmp_path)

    def session_row():
        return cells(app.main_screen.query_one("#sessions", DataTable))[0]

    async def scenario(pilot):
        await first_poll(pilot)
        assert "0/3" in queue_rows(app)[0]  # the stage's running/limit (its rate shows on a wider screen)
        assert "5" in session_row()
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), message="the question")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), message="the question to close")
        assert not engine.steering("rep").paused
        await pilot.press("p")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), message="the question")
        await pilot.press("enter")
        await until(pilot, lambda: app.noted("Paused rep"), message="the pause's notification")
        assert engine.steering("rep").paused
        await until(pilot, lambda: "(paused)" in queue_rows(app)[0][0], message="the queues to say paused")
        await until(pilot, lambda: session_row()[-1] == "paused", message="the session to say paused")
        await pilot.press("p")  # on a paused session: resume
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), message="the question")
        await pilot.press("enter")
        await until(pilot, lambda: app.noted("Resumed rep"), message="the resume's notification")
        assert not engine.steering("rep").paused

    run(app, scenario)
