"""``symphony-tui``: start the operations console (or, with ``--demo``, a live demo under it)."""
from __future__ import annotations

import argparse
import sys

from symphony.engine import ConfigError, Engine, SymphonyError, add_shared_options, configure_logging, redact, shared_options

from .web import add_web_options

DESCRIPTION = ("The Symphony operations console: live queues, workers, scale-set CPU and activity, with "
               "keyboard-triggered repair, initialize, export, cancel and retry.")
EPILOG = ("Keys: r repair · i initialize · e export · c cancel · f retry failed · Enter session detail · "
          "/ filter · s sort · ? every key · q quit.  "
          "Redis: --redis or --redis-url-file, else $SYMPHONY_REDIS_URL, $SYMPHONY_REDIS_URL_FILE or $REDIS_URL; the password may also come from "
          "$REDIS_PASSWORD or --redis-password-file, and never appears on screen. Log lines go to Textual's "
          "devtools console (textual console).")


SCREENSHOT_SIZE = (160, 48)
LIVE_DEADLINE_S = 90.0  # --demo --screenshot: how long to wait for a worker and a completion


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="symphony-tui", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--demo", action="store_true",
                   help="start an embedded Redis, demo workers for every pool and the sample session, and watch "
                        "them; quitting stops everything the demo started")
    p.add_argument("--refresh", type=positive, default=1.0, metavar="SECONDS",
                   help="seconds between polls (default %(default)s); a poll starts only when the last one is drawn")
    p.add_argument("--tasks", default="tasks", metavar="DIR",
                   help="where 'i' (initialize) and 'r' (repair) look for session files (default %(default)s)")
    p.add_argument("--export-dir", default=".", metavar="DIR",
                   help="where 'e' writes status snapshots (default: the current directory)")
    p.add_argument("--processes", type=int, default=2, metavar="N",
                   help="with --demo: worker processes per pool (default %(default)s)")
    p.add_argument("--azure", action="store_true",
                   help="also run the Azure Monitor collector inside the console (configured as for 'symphony "
                        "metrics collect': SYMPHONY_AZURE_SUBSCRIPTION or AZURE_SUBSCRIPTION_ID, "
                        "SYMPHONY_AZURE_RESOURCE_GROUP, SYMPHONY_AZURE_SCALE_SETS). Without it the console draws "
                        "what a collector elsewhere stored, else the workers' host CPU, and names the source")
    p.add_argument("--screenshot", metavar="FILE.svg",
                   help="run without a terminal, save an SVG screenshot of the main screen to FILE after "
                        "--screenshot-after seconds, and quit (for docs and bug reports)")
    p.add_argument("--screenshot-after", type=positive, default=8.0, metavar="SECONDS",
                   help="with --screenshot: seconds of live data before the shot (default %(default)s)")
    add_shared_options(p, key_help="AES key of encrypted task data (default: $SYMPHONY_KEY_FILE, $SYMPHONY_KEY): "
                                   "what 'i' and 'r' enqueue is then encrypted, as the workers expect "
                                   "(docs/security.md)")
    add_web_options(p)
    return p


def say(message: str) -> None:
    """A line on stderr, unless the terminal is gone (closed window, dropped SSH): then nothing,
    so that cleaning up still happens."""
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _azure_collector(engine, app):
    """The Azure Monitor collector, started, posting its notes to the console; None (said why) when
    it is not configured."""
    from symphony.azure.monitor import AzureCollector

    collector = AzureCollector.from_env(engine, on_message=app.post_note)
    if collector is None:
        say("symphony-tui: --azure: the Azure Monitor collector is not configured (set "
            "SYMPHONY_AZURE_SUBSCRIPTION and SYMPHONY_AZURE_RESOURCE_GROUP; see README)")
        return None
    collector.start()
    return collector


def _screenshot_saved(app, *, live: bool) -> bool:
    """Say where the screenshot went, or why there is none."""
    if app.screenshot_saved:
        say(f"symphony-tui: screenshot saved to {app.screenshot_saved}")
        return True
    say("symphony-tui: no screenshot: " + (f"no live data (a worker and a completion) within {LIVE_DEADLINE_S:.0f} s"
                                           if live else "no data was read from Redis"))
    return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Nothing may write to the terminal under the app: warnings go to Textual's devtools log.
    from textual.logging import TextualHandler

    configure_logging(args.log_level, args.log_format, handler=TextualHandler())

    from .demo import Ended, catch_endings, ignore_endings, restore_endings

    demo = None
    backend = None
    collector = None
    callers = ignore_endings()  # the caller's handlers, given back at the end (main() may run in-process)
    restore_endings(callers)
    catch_endings()
    try:
        options = shared_options(args, client_name="symphony-tui")
        if args.web:  # the same console, one process per browser tab (symphony/console/web.py)
            from .web import run as run_web

            return run_web(args, options, say)
        config = options.redis
        if args.demo:
            from .demo import Demo

            say("symphony-tui: starting the demo (embedded Redis, workers, the sample session)…")
            demo = Demo(options=options, processes=args.processes)
            demo.start()
            config = demo.config.with_client_name("symphony-tui")
        from .app import SymphonyApp
        from .backend import Backend

        engine = Engine(config, socket_timeout=3.0, sealer=options.sealer())
        # the demo's own session folder: r and i see the definition the demo registered
        backend = Backend(engine, tasks_dir=demo.tasks_dir if demo else args.tasks)
        note = "demo (q stops it all)" if demo else ""
        app = SymphonyApp(backend, refresh=args.refresh, export_dir=args.export_dir, note=note, handle_signals=True,
                          screenshot=(args.screenshot, args.screenshot_after) if args.screenshot else None,
                          screenshot_live=bool(demo))
        if args.azure:
            collector = _azure_collector(engine, app)
            if collector is None:
                return 2
        try:
            if args.screenshot:
                app.run(headless=True, size=SCREENSHOT_SIZE)
            else:
                app.run()
        finally:
            catch_endings()  # the app's own handlers are gone with its event loop
        if args.screenshot and not _screenshot_saved(app, live=demo is not None):
            return 1
        return int(app.return_code or 0)
    except ConfigError as exc:
        say(f"symphony-tui: {redact(exc)}")
        return 2
    except SymphonyError as exc:
        say(f"symphony-tui: {redact(exc)}")
        return 1
    except FileNotFoundError as exc:  # e.g. --demo without a Redis server binary
        say(f"symphony-tui: {redact(exc)}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Ended as ended:
        return 128 + ended.signum
    finally:
        ignore_endings()
        if collector is not None:
            collector.stop()
        if backend is not None:
            backend.close()
        if demo is not None:
            say("symphony-tui: stopping the demo…")
            demo.stop()
        restore_endings(callers)


if __name__ == "__main__":
    sys.exit(main())
