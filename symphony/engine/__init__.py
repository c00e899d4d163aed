"""Symphony's engine: all the Redis logic, and no UI.

The console and the workers use only the names exported here.
"""
from .acl import reader_rules, setuser, setuser_line, worker_rules
from .config import RedisConfig, resolve_redis
from .logsetup import configure_logging, log_formatter
from .options import SharedOptions, add_shared_options, parse_duration, shared_options
from .connection import Backoff, connect, describe_error, is_unavailable, redis_problem
from .control import CANCEL_EFFECT, CancelResult, Failure, PurgeResult, QueueInfo, RetryResult, SessionDetail
from .core import Engine
from .crypto import CryptoError, Sealer, load_key, sealer_from
from .definition import Change, Comparison, compare_definitions
from .embedded import EmbeddedRedis, find_server_binary, free_port
from .enqueue import EnqueueResult
from .errors import (ConfigError, Problem, RedisUnavailable, SessionConflict, SpecError, SymphonyError,
                     UnknownSession)
from .initialize import InitializeResult, initialize_session
from .jobstore import JobStore
from .keys import DEFAULT_KEYS, Keys
from .lease import (CANCELLED, DONE, FAILED, HANDBACK, RETRY, TIMED_OUT, Beat, Claimed, Finish, Outcome,
                    StepResult, WorkerLink, default_worker_id)
from .messages import InvalidMessage, Task, decode_task
from .outcomes import Decision, OutcomeKind, SessionState, after_failure
from .names import check_name, is_name, name_problem
from .pipeline import Handler, Pipeline, Stage, load_pipeline
from .metadata import register_source
from .reclaim import ReclaimReport
from .repair import RepairPlan, RepairResult, StagePlan
from .redaction import install_log_redaction, redact, redact_standard_streams, redact_url, register_secret
from .session_file import Item, SessionRecord, SessionSpec, load_session
from .snapshot import Event, QueueStatus, SessionStatus, Snapshot, WorkerStatus
from .verify import VerificationReport, session_files, verify_paths

__all__ = [
    "Backoff", "Beat", "CANCELLED", "Claimed", "ConfigError", "CryptoError", "Sealer", "load_key",
    "reader_rules", "sealer_from", "setuser", "setuser_line", "worker_rules", "DEFAULT_KEYS", "DONE", "EmbeddedRedis", "Engine",
    "EnqueueResult", "Event", "InitializeResult", "initialize_session", "FAILED", "Finish", "HANDBACK", "Handler", "InvalidMessage", "Item", "JobStore", "Keys",
    "Outcome", "Pipeline", "Problem", "QueueStatus", "RETRY", "ReclaimReport", "RedisConfig", "RedisUnavailable",
    "SessionConflict", "SessionRecord", "SessionSpec", "SessionStatus", "Snapshot", "SpecError", "Stage",
    "StepResult", "SymphonyError", "TIMED_OUT", "Task", "UnknownSession", "WorkerLink", "WorkerStatus",
    "check_name", "connect", "decode_task", "default_worker_id", "describe_error", "find_server_binary",
    "free_port", "install_log_redaction", "is_name", "is_unavailable", "load_pipeline", "load_session",
    "name_problem", "redact", "redact_standard_streams", "redis_problem", "redact_url", "register_secret",
    "resolve_redis", "Decision", "OutcomeKind", "SessionState", "after_failure",
    "CANCEL_EFFECT", "Change", "Comparison", "compare_definitions", "SharedOptions", "add_shared_options", "configure_logging", "log_formatter", "parse_duration", "shared_options",
    # operator verbs
    "CancelResult", "Failure", "PurgeResult", "QueueInfo", "RepairPlan", "RepairResult", "RetryResult",
    "SessionDetail", "StagePlan", "VerificationReport", "register_source", "session_files", "verify_paths",
]

# --- machine metrics: host CPU from heartbeats, scale-set CPU from Azure Monitor (symphony.azure.monitor) ---
from .metrics import (AZURE_RETENTION_S, AzureSample, CollectorStatus, HostCpu, HostMetricsWriter,  # noqa: E402
                      HostStatus, ScaleSetCpu, hosts_from_workers)

__all__ += ["AZURE_RETENTION_S", "AzureSample", "CollectorStatus", "HostCpu", "HostMetricsWriter", "HostStatus",
            "ScaleSetCpu", "hosts_from_workers"]
