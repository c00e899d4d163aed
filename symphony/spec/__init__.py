"""Symphony's spec files: session and pipeline YAML, parsed and checked without Redis.

Everything here reads files only: YAML with file/line/field errors and bounds
(:mod:`.yamlfile`, :mod:`.limits`), pipelines (:mod:`.pipeline`), session files and their items
(:mod:`.session`, :mod:`.items`, :mod:`.metadata`), the names that become keys and paths
(:mod:`.names`) and the checks of verification that need only the files (:mod:`.verify`). It
never imports Redis nor the engine (an import-linter contract); the engine adds the checks that
need Redis and re-exports the names below for the front ends and workers.
"""
from .items import Item, RowFile
from .limits import LIMITS, Limits
from .locations import is_url, url_scheme
from .metadata import register_source
from .names import check_name, is_name, name_problem, role_problem
from .pipeline import Handler, Pipeline, Stage, load_pipeline, pipeline_from_dict
from .problems import Problem, SpecError
from .rates import MAX_LIMIT, MAX_PRIORITY, parse_rate, rate_text
from .session import SessionRecord, SessionSpec, load_session
from .verify import VerificationReport, in_standard_library, root_not_writable, session_files, verify_paths
from .yamlfile import Locator

__all__ = [
    "Handler", "Item", "LIMITS", "Limits", "Locator", "Pipeline", "Problem", "RowFile", "SessionRecord", "SessionSpec",
    "SpecError", "Stage", "VerificationReport", "check_name", "in_standard_library", "is_name", "load_pipeline",
    "load_session", "name_problem", "pipeline_from_dict", "register_source", "role_problem", "session_files",
    "verify_paths", "MAX_LIMIT", "MAX_PRIORITY", "parse_rate", "rate_text", "is_url", "url_scheme",
    "root_not_writable",
]
