"""Pipeline definitions: ordered stages, each a queue role served by a pool of workers.

A pipeline file (YAML)::

    pipeline: scan
    defaults: {timeout: 300, max_attempts: 3}
    stages:
      - name: rvm
        pool: windows
        handler: symphony.workers.sample_handlers:rvm          # a Python callable, or:
        # command: [python, tool.py, "{input}", "{output}", --seconds, "{seconds}"]
        # stdout: output                                       # a command whose stdout is the output
        output: "{root}/{session}/{stage}/{item}.json"
        timeout: 60
        max_attempts: 3
        params: {seconds: 0.5}
      - name: preprocess
        aliases: [preproc]
        ...
    allow_stdlib_handlers: [shutil:copyfile]   # standard-library handlers this pipeline may call

Loading validates everything and reports every problem with its file, line and field. The
fields of each part of the file are declared once (:data:`PIPELINE_FIELDS`, :data:`STAGE_FIELDS`)
and checked by :func:`symphony.spec.fields.read_fields`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import templates
from .fields import (INVALID, Context, Field, Invalid, flag, is_target, mapping, number, read_fields, role, roles,
                     targets, text, valid)
from .limits import LIMITS, Limits
from .problems import SpecError
from .rates import MAX_LIMIT, parse_rate
from .yamlfile import Locator, load_yaml

OUTPUT_FIELDS = frozenset({"root", "session", "stage", "item"})
COMMAND_FIELDS = frozenset({"root", "session", "stage", "item", "input", "output", "attempt", "python"})
MAX_BACKOFF = 300.0
STDOUT_MODES = ("output",)


@dataclass(frozen=True)
class Handler:
    """How a stage runs: a Python callable ``module:function`` or a command (argv template)."""

    kind: str  # "python" or "command"
    target: str = ""  # module:function for python
    argv: tuple[str, ...] = ()  # command template, one element per argument
    shell: bool = False  # run ``argv[0]`` through the shell (only when asked)
    stdout_is_output: bool = False  # a command whose standard output is the stage's output

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "python":
            return {"handler": self.target}
        data: dict[str, Any] = {"command": self.argv[0], "shell": True} if self.shell else {"command": list(self.argv)}
        if self.stdout_is_output:
            data["stdout"] = "output"
        return data


@dataclass(frozen=True)
class Stage:
    name: str
    handler: Handler
    pool: str = "default"
    aliases: tuple[str, ...] = ()
    output: str | None = None
    timeout: float = 3600.0
    max_attempts: int = 3
    retry_backoff: float = 1.0
    retry_timeouts: bool = False
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    description: str = ""
    isolation: str = "executor"  # Python handlers: "executor" (a process of their own) or "inline" (the worker's)
    max_running: int | None = None  # never more of this stage's tasks running at once, fleet-wide
    rate: str | None = None  # e.g. "120/min": a token bucket in the claim (docs/control.md)

    def backoff(self, attempts_made: int) -> float:
        """Seconds to wait before the next attempt, after ``attempts_made`` failures."""
        if self.retry_backoff <= 0:
            return 0.0
        return min(MAX_BACKOFF, self.retry_backoff * (2 ** max(0, attempts_made - 1)))

    def output_path(self, root: str, session: str, item: str) -> str | None:
        if self.output is None:
            return None
        return self.output.format(root=root, session=session, stage=self.name, item=item)

    def output_dir_and_pattern(self, root: str, session: str) -> tuple[str, str, str] | None:
        """(directory, filename prefix, filename suffix) of this stage's outputs, for listing."""
        if self.output is None:
            return None
        directory, _, last = self.output.rpartition("/")
        directory = directory.format(root=root, session=session, stage=self.name)
        prefix, _, suffix = last.partition("{item}")
        prefix = prefix.format(root=root, session=session, stage=self.name)
        suffix = suffix.format(root=root, session=session, stage=self.name)
        return directory, prefix, suffix

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "pool": self.pool, **self.handler.to_dict(),
                                "timeout": self.timeout, "max_attempts": self.max_attempts,
                                "retry_backoff": self.retry_backoff, "retry_timeouts": self.retry_timeouts,
                                "params": dict(self.params)}
        if self.aliases:
            data["aliases"] = list(self.aliases)
        if self.output is not None:
            data["output"] = self.output
        if self.description:
            data["description"] = self.description
        if self.isolation != "executor":
            data["isolation"] = self.isolation
        if self.max_running is not None:
            data["max_running"] = self.max_running
        if self.rate is not None:
            data["rate"] = self.rate
        return data


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    source: str = ""
    description: str = ""
    locator: Any = field(default=None, compare=False, repr=False, hash=False)
    # handlers in the Python standard library that this pipeline says it means to call
    allow_stdlib_handlers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        lookup: dict[str, int] = {}
        for index, stage in enumerate(self.stages):
            lookup[stage.name] = index
            for alias in stage.aliases:
                lookup[alias] = index
        object.__setattr__(self, "_lookup", lookup)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def index(self, name: str) -> int:
        """Position of the stage called ``name`` (or one of its aliases); KeyError if unknown."""
        return self._lookup[name]  # type: ignore[attr-defined]

    def stage(self, name: str) -> Stage:
        return self.stages[self.index(name)]

    def has_stage(self, name: str) -> bool:
        return name in self._lookup  # type: ignore[attr-defined]

    def canonical(self, name: str) -> str:
        return self.stage(name).name

    def next_stage(self, name: str) -> Stage | None:
        index = self.index(name) + 1
        return self.stages[index] if index < len(self.stages) else None

    def pools(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for stage in self.stages:
            out.setdefault(stage.pool, []).append(stage.name)
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pipeline": self.name, "stages": [s.to_dict() for s in self.stages]}
        if self.description:
            data["description"] = self.description
        if self.allow_stdlib_handlers:
            data["allow_stdlib_handlers"] = list(self.allow_stdlib_handlers)
        return data

    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- the fields of a pipeline file ---------------------------------------------------------------------------
def _target(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise Invalid(f"handler must be 'module:function', not {value!r}")
    if not is_target(value):
        raise Invalid(f"handler {value!r} is not a valid module:function")
    return value


def _command(value: Any, ctx: Context) -> Any:
    """A command's shape: one string (for the shell) or a non-empty list of scalars."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list) or not value or not all(isinstance(a, (str, int, float)) for a in value):
        raise Invalid("command must be a non-empty list of strings")
    return tuple(str(a) for a in value)


def _stdout(value: Any, ctx: Context) -> str:
    if value not in STDOUT_MODES:
        raise Invalid(f"stdout must be 'output' (the command's standard output is the stage's output), not {value!r}")
    return value


def _output(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"output must be a path template string, not {value!r}")
    template = value.replace("\\", "/")
    try:
        names = templates.check(template, OUTPUT_FIELDS, " in output")
    except templates.TemplateError as exc:
        raise Invalid(str(exc)) from None
    if names.count("item") != 1 or "{item}" not in template.rpartition("/")[2]:
        raise Invalid("output must contain {item} exactly once, in the file name "
                      "(e.g. '{root}/{session}/{stage}/{item}.json'), so repair can list one directory")
    return template


ISOLATIONS = ("executor", "inline")


def _isolation(value: Any, ctx: Context) -> str:
    if value not in ISOLATIONS:
        raise Invalid(f"isolation must be one of {', '.join(ISOLATIONS)}, not {value!r}")
    return value


def _rate(value: Any, ctx: Context) -> str:
    try:
        parse_rate(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return value.strip()


STAGE_FIELDS = (
    Field("name", role("stage name"), missing="missing the stage's name"),
    Field("aliases", roles("alias"), default=()),
    Field("pool", role("pool"), default="default"),
    Field("handler", _target),
    Field("command", _command),
    Field("shell", flag("shell"), default=False),
    Field("stdout", _stdout),
    Field("output", _output),
    Field("timeout", number("timeout (seconds)", 0.001), default=3600.0),
    Field("max_attempts", number("max_attempts", 1, integer=True), default=3),
    Field("retry_backoff", number("retry_backoff (seconds)", 0), default=1.0),
    Field("retry_timeouts", flag("retry_timeouts"), default=False),
    Field("params", mapping("params must be a mapping of names to values"), default={}),
    Field("description", text, default=""),
    Field("isolation", _isolation, default="executor"),
    Field("max_running", number("max_running", 0, integer=True)),  # at most MAX_LIMIT: see _stage
    Field("rate", _rate),
)
DEFAULT_FIELDS = tuple(f for f in STAGE_FIELDS if f.name in ("pool", "timeout", "max_attempts", "retry_backoff",
                                                            "retry_timeouts", "isolation"))
PIPELINE_FIELDS = (
    Field("pipeline", role("pipeline name"), missing="missing the pipeline's name ('pipeline: NAME')"),
    Field("description", text, default=""),
    Field("defaults"),
    Field("stages", missing="stages must be a non-empty list"),
    Field("allow_stdlib_handlers", targets("allow_stdlib_handlers"), default=()),
)


# --- parsing ---------------------------------------------------------------------------------------------------
def _argv_placeholders(argv: tuple[str, ...], params: Mapping[str, Any], path: tuple, ctx: Context) -> None:
    known = COMMAND_FIELDS | set(params)
    for index, arg in enumerate(argv):
        try:
            templates.check(arg, known)
        except templates.TemplateError as exc:
            ctx.report(path + ("command", index), str(exc))


def _command_handler(v: Mapping[str, Any], path: tuple, ctx: Context) -> Handler | None:
    command, shell = v["command"], v["shell"]
    if shell is INVALID:
        return None
    if shell and (not isinstance(command, str) or not command.strip()):
        ctx.report(path + ("command",), "with shell: true, command must be one string")
        return None
    if not shell and isinstance(command, str):
        ctx.report(path + ("command",), "command must be a list of arguments (argv), e.g. [python, tool.py, "
                                        "'{input}']; set shell: true to run a string through the shell")
        return None
    argv = (command,) if shell else command
    _argv_placeholders(argv, v["params"] if isinstance(v["params"], dict) else {}, path, ctx)
    stdout = v["stdout"] == "output"
    if stdout and v["output"] is None:
        ctx.report(path + ("stdout",), "stdout: output needs the stage's 'output' template (where the output goes)")
    return Handler("command", argv=argv, shell=shell, stdout_is_output=stdout)


def _handler(v: Mapping[str, Any], path: tuple, ctx: Context) -> Handler | None:
    """The stage's handler, from ``handler`` or ``command`` (exactly one), ``shell`` and ``stdout``."""
    has_handler, has_command = v["handler"] is not None, v["command"] is not None
    if has_handler == has_command:
        ctx.report(path, "a stage needs exactly one of 'handler' (module:function) or 'command'")
        return None
    if v["handler"] is INVALID or v["command"] is INVALID:
        return None
    if has_command:
        return _command_handler(v, path, ctx)
    for key, why in (("shell", "'shell' only applies to a 'command' handler"),
                     ("stdout", "'stdout' only applies to a 'command' handler (a Python handler writes its output)")):
        if v[key] is True or v[key] == "output":
            ctx.report(path + (key,), why)
    return Handler("python", target=v["handler"])


def _labels(v: Mapping[str, Any], index: int, path: tuple, seen: dict[str, Any], ctx: Context) -> None:
    """A stage's name and aliases are used by no earlier stage."""
    aliases = v["aliases"] if v["aliases"] is not INVALID else ()
    for label in (v["name"], *aliases):
        if not isinstance(label, str):
            continue
        if label in seen:
            ctx.report(path + ("name",), f"{label!r} is already used by stage {seen[label]}")
        else:
            seen[label] = v["name"] if isinstance(v["name"], str) else index


def _stage(raw: Any, index: int, defaults: Mapping[str, Any], seen: dict[str, Any], ctx: Context) -> Stage | None:
    path = ("stages", index)
    before = len(ctx.problems)
    v = read_fields(raw, STAGE_FIELDS, path, ctx, defaults=defaults,
                    what="each stage must be a mapping with at least 'name' and a handler")
    if v is None:
        return None
    _labels(v, index, path, seen, ctx)
    if isinstance(v["max_running"], int) and v["max_running"] > MAX_LIMIT:
        ctx.report(path + ("max_running",), f"max_running must be at most {MAX_LIMIT:,}, not {v['max_running']}")
    handler = _handler(v, path, ctx)
    if handler is not None and handler.kind != "python" and v["isolation"] == "inline" \
            and isinstance(raw, dict) and "isolation" in raw:
        ctx.report(path + ("isolation",), "isolation: inline only applies to a Python handler (a command is always "
                                          "its own process)")
    if handler is None or len(ctx.problems) != before or not valid(v):
        return None
    return Stage(name=v["name"], handler=handler, pool=v["pool"], aliases=v["aliases"], output=v["output"],
                 timeout=float(v["timeout"]), max_attempts=int(v["max_attempts"]),
                 retry_backoff=float(v["retry_backoff"]), retry_timeouts=v["retry_timeouts"], params=v["params"],
                 description=v["description"], max_running=v["max_running"], rate=v["rate"],
                 isolation=v["isolation"] if handler.kind == "python" else "executor")


def parse_pipeline(data: Any, loc: Locator) -> Pipeline:
    """Validate parsed YAML ``data`` as a pipeline; raise :class:`SpecError` listing every problem."""
    ctx = Context(loc, [])
    top = read_fields(data, PIPELINE_FIELDS, (), ctx, what="a pipeline file must be a mapping with 'pipeline' and 'stages'")
    if top is None:
        raise SpecError(ctx.problems)
    defaults = read_fields(top["defaults"] or {}, DEFAULT_FIELDS, ("defaults",), ctx, what="defaults must be a mapping")
    defaults = {k: v for k, v in (defaults or {}).items() if v is not INVALID}
    raw_stages = top["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        if raw_stages is not INVALID:
            ctx.report(("stages",), "stages must be a non-empty list")
        raw_stages = []
    seen: dict[str, Any] = {}
    stages = [_stage(raw, index, defaults, seen, ctx) for index, raw in enumerate(raw_stages)]
    if ctx.problems:
        raise SpecError(ctx.problems)
    return Pipeline(name=top["pipeline"], stages=tuple(stages), source=loc.file, description=top["description"],
                    locator=loc, allow_stdlib_handlers=top["allow_stdlib_handlers"])


def load_pipeline(path: str | Path, *, limits: Limits = LIMITS) -> Pipeline:
    data, loc = load_yaml(path, limits=limits, what="pipeline file")
    return parse_pipeline(data, loc)


def pipeline_from_dict(data: Mapping[str, Any], source: str = "<redis>") -> Pipeline:
    """Rebuild a pipeline stored in Redis (already validated when it was registered)."""
    return parse_pipeline(dict(data), Locator(source))
