"""``symphony-tui``: start the operations console (or, with ``--demo``, a live demo under it)."""
from __future__ import annotations

import argparse
import sys

from symphony.engine import ConfigError, Engine, SymphonyError, add_shared_options, configure_logging, redact, shared_options

DESCRIPTION = ("The Symphony operations console: live queues, workers, scale-set CPU and activity, with "
               "keyboard-triggered repair, initialize, export, cancel and retry.")
EPILOG = ("Keys: r repair · i initialize · e export · c cancel · f retry failed · Enter session detail · "
          "/ filter · s sort · ? every key · q quit.  "
          "Redis: --redis, else $SYMPHONY_REDIS_URL or $REDIS_URL; the password may also come from "
          "$REDIS_PASSWORD or --redis-password-file, and never appears on screen. Log lines go to Textual's "
          "devtools console (textual console).")


SCREENSHOT_SIZE = (160, 48)


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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Nothing may write to the terminal under the app: warnings go to Textual's devtools log.
    from textual.logging import TextualHandler

    configure_logging(args.log_level, args.log_format, handler=TextualHandler())

    demo = None
    backend = None
    collector = None
    try:
        options = shared_options(args, client_name="symphony-tui")
        config = options.redis
        if args.demo:
            from .demo import Demo

            sys.stderr.write("symphony-tui: starting the demo (embedded Redis, workers, the sample session)…\n")
            sys.stderr.flush()
            demo = Demo(options=options, processes=args.processes).start()
            config = demo.config.with_client_name("symphony-tui")
        from .app import SymphonyApp
        from .backend import Backend

        engine = Engine(config, socket_timeout=3.0, sealer=options.sealer())
        backend = Backend(engine, tasks_dir=args.tasks)
        note = "demo (q stops it all)" if demo else ""
        app = SymphonyApp(backend, refresh=args.refresh, export_dir=args.export_dir, note=note, handle_signals=True,
                          screenshot=(args.screenshot, args.screenshot_after) if args.screenshot else None)
        if args.azure:
            from symphony.azure.monitor import AzureCollector

            collector = AzureCollector.from_env(engine, on_message=app.post_note)
            if collector is None:
                sys.stderr.write("symphony-tui: --azure: the Azure Monitor collector is not configured (set "
                                 "SYMPHONY_AZURE_SUBSCRIPTION and SYMPHONY_AZURE_RESOURCE_GROUP; see README)\n")
                return 2
            collector.start()
        if args.screenshot:
            app.run(headless=True, size=SCREENSHOT_SIZE)
            if app.screenshot_saved:
                sys.stderr.write(f"symphony-tui: screenshot saved to {app.screenshot_saved}\n")
            else:
                sys.stderr.write("symphony-tui: no screenshot: no data was read from Redis\n")
                return 1
        else:
            app.run()
        return int(app.return_code or 0)
    except ConfigError as exc:
        sys.stderr.write(f"symphony-tui: {redact(exc)}\n")
        return 2
    except SymphonyError as exc:
        sys.stderr.write(f"symphony-tui: {redact(exc)}\n")
        return 1
    except FileNotFoundError as exc:  # e.g. --demo without tasks/ or without a Redis server binary
        sys.stderr.write(f"symphony-tui: {redact(exc)}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if collector is not None:
            collector.stop()
        if backend is not None:
            backend.close()
        if demo is not None:
            sys.stderr.write("symphony-tui: stopping the demo…\n")
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
