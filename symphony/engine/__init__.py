"""Symphony's engine: all the Redis logic, and no UI.

The console, the CLI and the workers use only the names exported here (an import-linter contract
holds them to it). They are grouped by domain, in the order a reader meets them: connecting to
Redis, the session files, putting work in, how a task ends, the workers' side, the operator's
verbs, the status snapshot, machine metrics, security. Everything else is internal: tests
import it from its module. The spec files' model (pipelines, session files, verification of the
files) lives in :mod:`symphony.spec`, which never touches Redis; the engine re-exports the names
the front ends and workers use, and adds the checks that need Redis
(``verify_paths(..., engine=...)``).
"""
# --- connecting: where Redis is, the facade, the server, errors -----------------------------------
from .config import RedisConfig, resolve_redis
from .options import (SHARED_ENVIRONMENT, OptionSource, SharedOptions, add_shared_options, env_name, parse_duration,
                      parse_with_config, read_config_file, secret_file_problem, shared_options)
from .logsetup import configure_logging
from .connection import Backoff, describe_error, is_out_of_memory, is_unavailable, redis_problem
from .sharing import share_one_connection
from .core import Engine
from .embedded import EmbeddedRedis
from .errors import (ConfigError, CredentialsRefused, Problem, RedisUnavailable, SessionConflict, SpecError,
                     SymphonyError, UnknownSession)
from .keys import Keys
from .server import PolicyNotice, ServerInfo

# --- session files: pipelines, sessions, verification (symphony.spec, plus the checks in Redis) ----
from symphony.spec import (Handler, Item, Pipeline, SessionRecord, SessionSpec, Stage, VerificationReport, is_name,
                           load_pipeline, load_session, register_source)
from .verify import verify_paths

# --- putting work in: initialize, enqueue, repair --------------------------------------------------
from .enqueue import EnqueueResult
from .initialize import InitializeResult, initialize_session
from .repair import RepairPlan, RepairResult, StagePlan

# --- where outputs live: local paths or object stores (the stores behind the storage extra) ---------
from .stores import (LOCAL, STORE_VARIABLES, LocalStore, OutputStore, capture_store_environment, forget_stores,
                     is_url, open_store, register_store, store_environment, store_key, store_variables, url_scheme)

# --- how a task ends: outcome kinds, the retry policy, the outcome record, session states -----------
from .hosts import HostHealth
from .outcomes import Decision, OutcomeKind, OutcomeRecord, SessionState, after_failure, run_here

# --- the workers' side: leases, reports, reclaim, job key/values -----------------------------------
from .jobstore import JobStore
from .lease import Beat, Claimed, Finish, Outcome, StepResult, WorkerLink
from .lost import LostReport
from .messages import Task
from .reclaim import ReclaimReport
from .worklog import LogLine
from .forwarding import ResultRecord, ResultsReader

# --- the operator's verbs ---------------------------------------------------------------------------
from .control import CANCEL_EFFECT, CancelResult, PurgeResult, QueueInfo, RetryResult, SessionDetail
from .drain import Drain
from .steering import PAUSE_EFFECT, StageControl, Steering
from .definition import Change, Comparison, compare_definitions
from .registry import SessionSummary

# --- the status snapshot -----------------------------------------------------------------------------
from .snapshot import Event, QueueStatus, SessionStatus, Snapshot, WorkerStatus
from .fleet_summary import FleetSummary, GroupSummary
from .fleet_view import FleetReader
from .durations import DurationHistogram

# --- machine metrics: host CPU from heartbeats, scale-set CPU from Azure Monitor (symphony.azure) ---
from .metrics import AZURE_RETENTION_S, AzureSample, CollectorStatus, HostCpu, HostMetricsWriter, ScaleSetCpu

# --- SLURM job accounting (symphony.slurm talks to SLURM; the engine stores what it saw) ------------
from .slurm_accounting import (CleanupResult, JobSet, Lease, LockLost, Observation, SlurmAccounting, SlurmJob,
                               SlurmTag, slurm_origin)

# --- security: ACL users, encryption, redaction ------------------------------------------------------
from .acl import reader_rules, setuser, setuser_line, worker_rules
from .crypto import CryptoError, Sealer, load_key, output_aad, sealer_from
from .redaction import (SECRET_ENVIRONMENT, drop_secret_environment, install_log_redaction, redact,
                        redact_standard_streams, register_environment_secrets, register_secret,
                        without_secret_environment)

__all__ = [
    # connecting
    "RedisConfig", "resolve_redis", "Backoff", "describe_error", "is_out_of_memory",
    "is_unavailable", "redis_problem", "share_one_connection", "Engine",
    "EmbeddedRedis", "ConfigError", "Problem", "RedisUnavailable", "SessionConflict", "SpecError", "SymphonyError",
    "UnknownSession", "CredentialsRefused", "Keys", "PolicyNotice", "ServerInfo",
    # the options every entry point shares, and logging
    "SharedOptions", "add_shared_options", "parse_duration", "shared_options", "configure_logging",
    "SHARED_ENVIRONMENT", "OptionSource", "env_name", "parse_with_config", "read_config_file", "secret_file_problem",
    # session files
    "register_source", "is_name", "Handler", "Pipeline", "Stage", "load_pipeline", "Item", "SessionRecord",
    "SessionSpec", "load_session", "VerificationReport", "verify_paths",
    # putting work in
    "EnqueueResult", "InitializeResult", "initialize_session", "RepairPlan", "RepairResult", "StagePlan",
    # where outputs live
    "LOCAL", "STORE_VARIABLES", "LocalStore", "OutputStore", "capture_store_environment", "forget_stores", "is_url",
    "open_store", "register_store", "store_environment", "store_key", "store_variables", "url_scheme",
    # how a task ends
    "Decision", "OutcomeKind", "OutcomeRecord", "SessionState", "after_failure", "run_here", "HostHealth",
    # the workers' side
    "JobStore", "Beat", "Claimed", "Finish", "Outcome", "StepResult", "WorkerLink", "Task", "ReclaimReport",
    "LostReport", "LogLine", "ResultRecord", "ResultsReader",
    # the operator's verbs
    "CancelResult", "PurgeResult", "QueueInfo", "RetryResult", "SessionDetail", "SessionSummary",
    "CANCEL_EFFECT", "PAUSE_EFFECT", "Drain", "StageControl", "Steering", "Change", "Comparison", "compare_definitions",
    # the status snapshot
    "Event", "QueueStatus", "SessionStatus", "Snapshot", "WorkerStatus", "DurationHistogram",
    "FleetReader", "FleetSummary", "GroupSummary",
    # machine metrics
    "AZURE_RETENTION_S", "AzureSample", "CollectorStatus", "HostCpu", "HostMetricsWriter", "ScaleSetCpu",
    # SLURM job accounting
    "CleanupResult", "JobSet", "Lease", "LockLost", "Observation", "SlurmAccounting", "SlurmJob", "SlurmTag",
    "slurm_origin",
    # security
    "reader_rules", "setuser", "setuser_line", "worker_rules", "CryptoError", "Sealer", "load_key", "output_aad",
    "sealer_from",
    "install_log_redaction", "redact", "redact_standard_streams", "register_secret", "SECRET_ENVIRONMENT",
    "register_environment_secrets", "without_secret_environment", "drop_secret_environment",
]
