"""Symphony's engine: all the Redis logic, and no UI.

The console and the workers use only the names exported here.
"""
from .acl import reader_rules, setuser, setuser_line, worker_rules
from .config import RedisConfig, resolve_redis
from .connection import Backoff, connect, describe_error, is_unavailable, redis_problem
from .control import CancelResult, Failure, PurgeResult, QueueInfo, RetryResult, SessionDetail
from .core import Engine
from .crypto import CryptoError, Sealer, load_key, sealer_from
from .embedded import EmbeddedRedis, find_server_binary, free_port
from .enqueue import EnqueueResult
from .errors import (ConfigError, CredentialsRefused, Problem, RedisUnavailable, SessionConflict, SpecError,
                     SymphonyError, UnknownSession)
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
from .lost import LostReport
from .redaction import (SECRET_ENVIRONMENT, drop_secret_environment, install_log_redaction, redact,
                        redact_standard_streams, redact_url, register_environment_secrets, register_secret,
                        without_secret_environment)
from .session_file import Item, SessionRecord, SessionSpec, load_session
from .snapshot import Event, QueueStatus, SessionStatus, Snapshot, WorkerStatus
from .verify import VerificationReport, session_files, verify_paths
from .worklog import LogLine

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
    "CredentialsRefused", "LogLine", "LostReport", "SECRET_ENVIRONMENT", "drop_secret_environment",
    "register_environment_secrets", "without_secret_environment",
    # operator verbs (issue 3)
    "CancelResult", "Failure", "PurgeResult", "QueueInfo", "RepairPlan", "RepairResult", "RetryResult",
    "SessionDetail", "StagePlan", "VerificationReport", "register_source", "session_files", "verify_paths",
]

# --- machine metrics (issue 5): host CPU from heartbeats, scale-set CPU from Azure Monitor ---------
from .azure_monitor import AzureCollector, AzureMonitorConfig, CollectResult  # noqa: E402
from .metrics import (AzureSample, CollectorStatus, HostCpu, HostMetricsWriter, HostStatus, ScaleSetCpu,  # noqa: E402
                      hosts_from_workers)

__all__ += ["AzureCollector", "AzureMonitorConfig", "AzureSample", "CollectResult", "CollectorStatus", "HostCpu",
            "HostMetricsWriter", "HostStatus", "ScaleSetCpu", "hosts_from_workers"]
