"""A real single-node SLURM cluster for the tests: munged, slurmctld and slurmd started as root
from a generated slurm.conf, on free ports, with every state and spool directory in a temporary
folder, and stopped by their PIDs. Clients find it through ``SLURM_CONF``.

Needs Debian's ``slurm-wlm`` and ``munge`` packages (``.ci/run`` installs them) and root (the
daemons run as root, ``SlurmUser=root``). :func:`unavailable` says in one line why not.

With ``accounting=True`` it also starts a private MariaDB server and ``slurmdbd`` (packages
``mariadb-server`` and ``slurmdbd``), so ``sacct`` answers, and the controller forgets finished
jobs after ``min_job_age`` seconds, as a busy production controller does.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from symphony.engine.embedded import free_port

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo")
ACCOUNTING_BINARIES = ("slurmdbd", "sacct", "sacctmgr", "mariadbd", "mariadb-install-db", "mariadb")
CPUS = 4  # CPUs the node offers (more than this machine has: the tests' jobs are small)


def unavailable(accounting: bool = False) -> str | None:
    """Why a SLURM cluster cannot be started here, or None."""
    missing = [b for b in BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; apt-get install slurm-wlm munge)"
    missing = [b for b in ACCOUNTING_BINARIES if shutil.which(b) is None and not os.path.exists(f"/usr/sbin/{b}")]
    if accounting and missing:
        return (f"SLURM accounting needs {', '.join(missing)} (apt-get install slurmdbd mariadb-server)")
    if os.geteuid() != 0:
        return "the test SLURM cluster's daemons must run as root"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmCluster:
    def __init__(self, *, cpus: int = CPUS, name: str = "symtest", accounting: bool = False, min_job_age: int = 300):
        self.base = Path(tempfile.mkdtemp(prefix="symphony-slurm-"))
        self.cpus, self.name, self.accounting, self.min_job_age = cpus, name, accounting, min_job_age
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.base / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}
        self.pids: dict[str, Path] = {}

    # --- start ------------------------------------------------------------------------------
    def _munge(self) -> None:
        key_dir, sock_dir = self.base / "munge", self.base / "sock"
        key_dir.mkdir(mode=0o700)
        sock_dir.mkdir()
        os.chmod(self.base, 0o755)
        os.chmod(sock_dir, 0o755)  # munged insists that everyone may reach its socket
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        self.socket = sock_dir / "munge.sock"
        self.pids["munged"] = key_dir / "munged.pid"
        subprocess.run([_binary("munged"), f"--socket={self.socket}", f"--key-file={key}",
                        f"--log-file={key_dir / 'munged.log'}", f"--pid-file={self.pids['munged']}",
                        f"--seed-file={key_dir / 'munged.seed'}"], check=True, capture_output=True, timeout=30)

    def _write_conf(self) -> None:
        for folder in ("state", "spool", "log"):
            (self.base / folder).mkdir()
        self.ctld_port, self.slurmd_port = free_port(), free_port()
        b = self.base
        self.pids["slurmctld"], self.pids["slurmd"] = b / "slurmctld.pid", b / "slurmd.pid"
        self.conf.write_text(f"""\
ClusterName={self.name}
SlurmctldHost={self.host}
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
StateSaveLocation={b / 'state'}
SlurmdSpoolDir={b / 'spool'}
SlurmctldPidFile={self.pids['slurmctld']}
SlurmdPidFile={self.pids['slurmd']}
SlurmctldLogFile={b / 'log' / 'slurmctld.log'}
SlurmdLogFile={b / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
{self._accounting_lines()}
JobAcctGatherType=jobacct_gather/none
MinJobAge={self.min_job_age}
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def _accounting_lines(self) -> str:
        if not self.accounting:
            return "AccountingStorageType=accounting_storage/none"
        self.dbd_port = free_port()
        return (f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
                f"AccountingStoragePort={self.dbd_port}\nAccountingStoragePass={self.socket}")

    def _database(self) -> None:
        """A private MariaDB server and slurmdbd (its slurmdbd.conf sits next to slurm.conf)."""
        b, db = self.base, self.base / "db"
        db.mkdir()
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={db}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"], check=True, capture_output=True,
                       timeout=120)
        self.db_port = free_port()
        self.pids["mariadbd"] = b / "mariadbd.pid"
        self.mariadbd = subprocess.Popen([_binary("mariadbd"), "--no-defaults", f"--datadir={db}", "--user=root",
                          f"--socket={b / 'mariadb.sock'}", f"--port={self.db_port}", "--bind-address=127.0.0.1",
                          f"--pid-file={self.pids['mariadbd']}", f"--log-error={b / 'log' / 'mariadb.err'}",
                          "--innodb-buffer-pool-size=32M"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        self._until(lambda: subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.db_port),
                                            "-u", "root", "-e", "select 1"], capture_output=True).returncode == 0,
                    "MariaDB to accept connections")
        conf = b / "slurmdbd.conf"
        self.pids["slurmdbd"] = b / "slurmdbd.pid"
        conf.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={self.socket}
DbdHost=localhost
DbdPort={self.dbd_port}
SlurmUser=root
PidFile={self.pids['slurmdbd']}
LogFile={b / 'log' / 'slurmdbd.log'}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.db_port}
StorageUser=root
StorageLoc=slurm_acct_{self.name}
""")
        os.chmod(conf, 0o600)
        subprocess.run([_binary("slurmdbd")], check=True, capture_output=True, timeout=60, env={**os.environ, **self.env})
        self._until(lambda: self.run("sacctmgr", "-i", "add", "cluster", self.name, check=False).returncode == 0
                    or self.name in self.run("sacctmgr", "-n", "list", "cluster", "format=cluster", check=False).stdout,
                    "slurmdbd to register the cluster")

    def _until(self, predicate, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out waiting for {what}:\n{self.logs()}")

    def start(self) -> "SlurmCluster":
        try:
            self._munge()
            self._write_conf()
            if self.accounting:
                self._database()
            for daemon in ("slurmctld", "slurmd"):
                subprocess.run([_binary(daemon), "-f", str(self.conf)], check=True, capture_output=True, timeout=30,
                               env={**os.environ, **self.env})
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = self.run("sinfo", "--noheader", "--format=%t", check=False).stdout.strip()
                if state in ("idle", "mix", "alloc"):
                    return self
                time.sleep(0.2)
            raise RuntimeError(f"the test SLURM node did not become idle (state {state!r}):\n{self.logs()}")
        except BaseException:
            self.stop()
            raise

    # --- use --------------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout,
                              env={**os.environ, **self.env})

    def logs(self) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log", "slurmdbd.log", "mariadb.err"):
            path = self.base / "log" / name
            if path.exists():
                out.append(f"--- {name} (tail)\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(out)

    def live_jobs(self) -> list[str]:
        out = self.run("squeue", "--noheader", "--array", "--format=%i", check=False).stdout
        return [line.strip() for line in out.splitlines() if line.strip()]

    def cancel_all(self, timeout: float = 60.0) -> None:
        """Cancel every job and wait until SLURM has ended them (their processes are gone)."""
        if not self.live_jobs():
            return
        self.run("scancel", f"--user={os.getuid()}", check=False)
        deadline = time.monotonic() + timeout
        while self.live_jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.live_jobs():
            self.run("scancel", "--full", "--signal=KILL", f"--user={os.getuid()}", check=False)

    # --- stop -------------------------------------------------------------------------------
    def _kill(self, name: str) -> None:
        if name == "mariadbd" and getattr(self, "mariadbd", None) is not None:  # our child: reap it
            self.mariadbd.kill()  # a throwaway database: nothing to shut down cleanly
            self.mariadbd.wait(30)
            return
        path = self.pids.get(name)
        if path is None or not path.exists():
            return
        try:
            pid = int(path.read_text().strip())
        except ValueError:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)

    def stop(self) -> None:
        if self.conf.exists() and self.pids.get("slurmctld") and self.pids["slurmctld"].exists():
            try:
                self.cancel_all(timeout=30)
            except Exception:
                pass
        for name in ("slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"):
            self._kill(name)
        shutil.rmtree(self.base, ignore_errors=True)
