"""The live demo: an embedded Redis, the sample session, and workers for every pool.

Used by ``symphony-tui --demo`` and ``symphony demo``. Everything it starts is stopped on exit:
worker processes by SIGTERM (then SIGKILL), the server by its PID, temporary files removed.
A server the operator configured (``--redis`` or ``$REDIS_URL``) is used as is, never replaced.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from symphony.engine import (EmbeddedRedis, Engine, RedisConfig, SessionSpec, SharedOptions, initialize_session,
                             load_session, resolve_redis)

TASKS = Path(__file__).resolve().parents[2] / "tasks"
SAMPLE = "block7.yaml"


def sample_session_path() -> Path:
    """The sample session file (from the checkout's tasks/, or the current directory's)."""
    for base in (Path.cwd() / "tasks", TASKS):
        if (base / SAMPLE).is_file():
            return base / SAMPLE
    raise FileNotFoundError(f"the sample session tasks/{SAMPLE} was not found")


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
                self.spec = self._sample_spec()
                initialize_session(engine, self.spec)
            for pool in self.spec.pipeline.pools():
                self._spawn_workers(pool)
        except BaseException:
            self.stop()
            raise
        return self

    def _sample_spec(self) -> SessionSpec:
        spec = load_session(sample_session_path())
        root = str(self.workdir / "data")
        if self.seconds is not None:
            params = {s.name: {**spec.params.get(s.name, {}), "seconds": self.seconds} for s in spec.pipeline.stages}
            spec = dataclasses.replace(spec, params=params)
        # a demo-only failure rate on preprocess makes retries visible in the console
        params = dict(spec.params)
        params["preprocess"] = {**params.get("preprocess", {}), "fail_rate": 0.08}
        return dataclasses.replace(spec, root=root, params=params)

    def _spawn_workers(self, pool: str) -> None:
        env = dict(os.environ)
        env["REDIS_URL"] = env["SYMPHONY_REDIS_URL"] = self.config.url
        if self.config.password:
            env["REDIS_PASSWORD"] = self.config.password
        if self.config.ca_file:
            env["SYMPHONY_REDIS_CA_FILE"] = self.config.ca_file
        if self.options is not None and self.options.key_file:
            env["SYMPHONY_KEY_FILE"] = self.options.key_file
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TASKS.parent), env.get("PYTHONPATH", "")) if p)
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
