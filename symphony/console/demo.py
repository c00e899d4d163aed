"""The live demo: an embedded Redis, the sample session, and workers for every pool.

Used by ``symphony-tui --demo`` and ``symphony demo``. The sample session and pipeline ship inside
the package (``symphony/samples``, read with importlib.resources), so the demo runs from a wheel
as from a checkout. The demo writes the session file it registers into its own folder (with its
data root and parameters), and the console reads that folder: ``r`` (repair) and ``i``
(initialize) see exactly the definition Redis holds.

Everything it starts is stopped on exit: worker processes by SIGTERM (then SIGKILL), the server
by its PID, temporary files removed. A server the operator configured (``--redis`` or
``$REDIS_URL``) is used as is, never replaced.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

import symphony
from symphony.engine import (EmbeddedRedis, Engine, RedisConfig, SessionSpec, SharedOptions, initialize_session,
                             load_session, resolve_redis)

SAMPLE = "block7.yaml"
PIPELINE = "pipelines/scan.yaml"
PACKAGE_ROOT = Path(symphony.__file__).resolve().parents[1]  # where `import symphony` finds the package


def samples() -> Any:
    """The shipped samples folder (a Traversable of the installed package)."""
    return resources.files("symphony") / "samples"


def sample_text(name: str) -> str:
    """The text of a shipped sample (``block7.yaml``, ``pipelines/scan.yaml``)."""
    path = samples().joinpath(*name.split("/"))
    if not path.is_file():
        raise FileNotFoundError(f"the sample {name} is not in the installed package ({samples()}): "
                                "reinstall redis-symphony")
    return path.read_text(encoding="utf-8")


def write_demo_session(folder: Path, root: Path, *, seconds: float | None = None, fail_rate: float = 0.08) -> Path:
    """Write the demo's session file (and its pipeline) into ``folder``: the sample session with
    ``root`` as its data root, ``seconds`` per item at every stage if given, and a small failure
    rate on preprocess so retries show in the console. Returns the session file."""
    (folder / "pipelines").mkdir(parents=True, exist_ok=True)
    (folder / PIPELINE).write_text(sample_text(PIPELINE), encoding="utf-8")
    session = yaml.safe_load(sample_text(SAMPLE))
    session["root"] = str(root)
    params = {stage: dict(values) for stage, values in (session.get("params") or {}).items()}
    if seconds is not None:
        pipeline = yaml.safe_load(sample_text(PIPELINE))
        for stage in pipeline["stages"]:
            params.setdefault(stage["name"], {})["seconds"] = seconds
    params.setdefault("preprocess", {})["fail_rate"] = fail_rate
    session["params"] = params
    path = folder / SAMPLE
    header = ("# The demo's session: the sample session with the demo's data root and parameters,\n"
              "# written by the demo (symphony/console/demo.py) and registered as is.\n")
    path.write_text(header + yaml.safe_dump(session, sort_keys=False), encoding="utf-8")
    return path


class Ended(BaseException):
    """The console was told to end (SIGTERM, or SIGHUP: the terminal closed) outside the app."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _end(signum: int, frame) -> None:  # noqa: ANN001 - a signal handler
    raise Ended(signum)


def catch_endings() -> None:
    """SIGTERM and SIGHUP unwind through ``finally`` (which stops what the console started)."""
    if os.name == "posix":
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _end)


def ignore_endings() -> dict[int, Any]:
    """While cleaning up, a second SIGTERM, SIGHUP or Ctrl-C must not cut the cleaning short.
    Returns the handlers it replaced (none outside the main thread, where signals cannot be set)."""
    previous: dict[int, Any] = {}
    if os.name == "posix":
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, signal.SIG_IGN)
            except ValueError:  # not the main thread
                break
    return previous


def restore_endings(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


class Demo:
    def __init__(self, *, redis_url: str | None = None, options: SharedOptions | None = None, processes: int = 2,
                 seconds: float | None = None, heartbeat: float = 2.0):
        self.requested_url = redis_url
        self.options = options  # the shared command-line options: a server named there, TLS, the key
        self.processes = processes
        self.seconds = seconds
        self.heartbeat = heartbeat
        self.server: EmbeddedRedis | None = None
        self.workers: list[subprocess.Popen] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="symphony-demo-"))
        self.config: RedisConfig | None = None
        self.spec: SessionSpec | None = None

    # -------------------------------------------------------------------------------------
    def start(self) -> "Demo":
        try:
            configured = self.options.redis if self.options is not None else resolve_redis(self.requested_url)
            if configured.explicit:
                self.config = configured
            else:
                self.server = EmbeddedRedis(directory=str(self.workdir / "redis"))
                (self.workdir / "redis").mkdir(exist_ok=True)
                self.server.start()
                self.config = resolve_redis(self.server.url)
            sealer = self.options.sealer() if self.options is not None else None
            with Engine(self.config, sealer=sealer) as engine:
                engine.ping()
                self.spec = load_session(write_demo_session(self.tasks_dir, self.workdir / "data",
                                                            seconds=self.seconds))
                initialize_session(engine, self.spec)
            for pool in self.spec.pipeline.pools():
                self._spawn_workers(pool)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def tasks_dir(self) -> Path:
        """The demo's own session folder: the console's ``r`` and ``i`` read it."""
        return self.workdir / "tasks"

    def _spawn_workers(self, pool: str) -> None:
        env = dict(os.environ)
        env["REDIS_URL"] = env["SYMPHONY_REDIS_URL"] = self.config.url
        if self.config.password:
            env["REDIS_PASSWORD"] = self.config.password
        if self.config.ca_file:
            env["SYMPHONY_REDIS_CA_FILE"] = self.config.ca_file
        if self.options is not None and self.options.key_file:
            env["SYMPHONY_KEY_FILE"] = self.options.key_file
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        log = open(self.workdir / f"workers-{pool}.log", "wb")
        cmd = [sys.executable, "-m", "symphony.workers", "--pool", pool, "--processes", str(self.processes),
               "--name", f"demo-{pool}", "--heartbeat", str(self.heartbeat)]
        self.workers.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=env, start_new_session=True))
        log.close()

    @property
    def url(self) -> str:
        return self.config.url if self.config else ""

    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("workers-*.log"))

    # -------------------------------------------------------------------------------------
    def stop(self) -> None:
        previous = ignore_endings()
        try:
            self._stop()
        finally:
            restore_endings(previous)

    def _stop(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM) if os.name == "posix" else proc.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.workers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL) if os.name == "posix" else proc.kill()
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)
        self.workers = []
        if self.server is not None:
            self.server.close()
            self.server = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Demo":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
