"""Pipeline definitions: ordered stages, each a queue role served by a pool of workers.

A pipeline file (YAML)::

    pipeline: scan
    defaults: {timeout: 300, max_attempts: 3}
    stages:
      - name: rvm
        pool: windows
        handler: symphony.workers.sample_handlers:rvm          # a Python callable, or:
        # command: [python, tool.py, "{input}", "{output}", --seconds, "{seconds}"]
        output: "{root}/{session}/{stage}/{item}.json"
        timeout: 60
        max_attempts: 3
        params: {seconds: 0.5}
      - name: preprocess
        aliases: [preproc]
        ...

Loading validates everything and reports every problem with its file, line and field.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import Problem, SpecError
from .names import role_problem
from .yamlfile import Locator, load_yaml

OUTPUT_FIELDS = frozenset({"root", "session", "stage", "item"})
COMMAND_FIELDS = frozenset({"root", "session", "stage", "item", "input", "output", "attempt", "python"})
STAGE_KEYS = ("name", "aliases", "pool", "handler", "command", "shell", "stdout", "output", "timeout",
              "max_attempts", "retry_backoff", "retry_timeouts", "params", "description")
DEFAULT_KEYS = ("pool", "timeout", "max_attempts", "retry_backoff", "retry_timeouts")
TOP_KEYS = ("pipeline", "description", "defaults", "stages")
DEFAULTS: dict[str, Any] = {"pool": "default", "timeout": 3600.0, "max_attempts": 3,
                            "retry_backoff": 1.0, "retry_timeouts": False}
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class Handler:
    """How a stage runs: a Python callable ``module:function`` or a command (argv template)."""

    kind: str  # "python" or "command"
    target: str = ""  # module:function for python
    argv: tuple[str, ...] = ()  # command template, one element per argument
    shell: bool = False  # run ``argv[0]`` through the shell (only when asked)
    stdout_is_output: bool = False  # a command whose stdout is the stage's output (``stdout: output``)

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
        return data


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: tuple[Stage, ...]
    source: str = ""
    description: str = ""
    locator: Any = field(default=None, compare=False, repr=False, hash=False)

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

    def roles_of_pool(self, pool: str) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages if s.pool == pool)

    def pools(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for stage in self.stages:
            out.setdefault(stage.pool, []).append(stage.name)
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"pipeline": self.name, "stages": [s.to_dict() for s in self.stages]}
        if self.description:
            data["description"] = self.description
        return data

    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# parsing and validation


def _unknown(keys: Mapping[str, Any], allowed: tuple[str, ...], path: tuple, loc: Locator,
             problems: list[Problem]) -> None:
    for key in keys:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(allowed)})"
            problems.append(loc.problem(path + (key,), f"unknown field {key!r}{suggestion}"))


def _placeholders(template: str) -> list[str]:
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is not None:
            names.append(name)
    return names


def _number(value: Any, path: tuple, loc: Locator, problems: list[Problem], *, minimum: float,
            integer: bool = False, what: str = "") -> Any:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok or value < minimum:
        kind = "an integer" if integer else "a number"
        problems.append(loc.problem(path, f"{what or path[-1]} must be {kind} >= {minimum}, not {value!r}"))
        return None
    return value


def _parse_handler(raw: Mapping[str, Any], path: tuple, loc: Locator, params: Mapping[str, Any],
                   problems: list[Problem]) -> Handler | None:
    has_handler, has_command = "handler" in raw, "command" in raw
    if has_handler == has_command:
        problems.append(loc.problem(path, "a stage needs exactly one of 'handler' (module:function) or 'command'"))
        return None
    if has_handler:
        target = raw["handler"]
        if not isinstance(target, str) or target.count(":") != 1 or not all(target.split(":")):
            problems.append(loc.problem(path + ("handler",),
                                        f"handler must be 'module:function', not {target!r}"))
            return None
        module, func = target.split(":")
        if not all(p.isidentifier() for p in module.split(".")) or not func.isidentifier():
            problems.append(loc.problem(path + ("handler",), f"handler {target!r} is not a valid module:function"))
            return None
        if raw.get("shell"):
            problems.append(loc.problem(path + ("shell",), "'shell' only applies to a 'command' handler"))
        if "stdout" in raw:
            problems.append(loc.problem(path + ("stdout",), "'stdout' only applies to a 'command' handler"))
        return Handler("python", target=target)
    stdout = raw.get("stdout")
    if stdout is not None and (stdout != "output" or raw.get("output") is None):
        problems.append(loc.problem(path + ("stdout",), "stdout may only be 'output' (the command's stdout is the "
                                                         "stage's output), on a stage with an output"))
    command, shell = raw["command"], raw.get("shell", False)
    if not isinstance(shell, bool):
        problems.append(loc.problem(path + ("shell",), f"shell must be true or false, not {shell!r}"))
        return None
    if shell:
        if not isinstance(command, str) or not command.strip():
            problems.append(loc.problem(path + ("command",), "with shell: true, command must be one string"))
            return None
        argv: tuple[str, ...] = (command,)
    else:
        if isinstance(command, str):
            problems.append(loc.problem(path + ("command",),
                                        "command must be a list of arguments (argv), e.g. [python, tool.py, '{input}']; "
                                        "set shell: true to run a string through the shell"))
            return None
        if not isinstance(command, list) or not command or not all(isinstance(a, (str, int, float)) for a in command):
            problems.append(loc.problem(path + ("command",), "command must be a non-empty list of strings"))
            return None
        argv = tuple(str(a) for a in command)
    known = COMMAND_FIELDS | set(params)
    for index, arg in enumerate(argv):
        try:
            names = _placeholders(arg)
        except ValueError as exc:
            problems.append(loc.problem(path + ("command", index), f"bad placeholder in {arg!r}: {exc}"))
            continue
        for name in names:
            if name not in known:
                problems.append(loc.problem(path + ("command", index),
                                            f"unknown placeholder {{{name}}} (known: {', '.join(sorted(known))})"))
    return Handler("command", argv=argv, shell=shell, stdout_is_output=stdout == "output")


def _parse_output(value: Any, path: tuple, loc: Locator, problems: list[Problem]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(loc.problem(path, f"output must be a path template string, not {value!r}"))
        return None
    template = value.replace("\\", "/")
    try:
        names = _placeholders(template)
    except ValueError as exc:
        problems.append(loc.problem(path, f"bad placeholder in {value!r}: {exc}"))
        return None
    for name in names:
        if name not in OUTPUT_FIELDS:
            problems.append(loc.problem(path, f"unknown placeholder {{{name}}} in output (known: root, session, stage, item)"))
    last = template.rpartition("/")[2]
    if names.count("item") != 1 or "{item}" not in last:
        problems.append(loc.problem(path, "output must contain {item} exactly once, in the file name "
                                          "(e.g. '{root}/{session}/{stage}/{item}.json'), so repair can list one directory"))
    return template


def parse_pipeline(data: Any, loc: Locator) -> Pipeline:
    """Validate parsed YAML ``data`` as a pipeline; raise :class:`SpecError` listing every problem."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise SpecError([loc.problem((), "a pipeline file must be a mapping with 'pipeline' and 'stages'")])
    _unknown(data, TOP_KEYS, (), loc, problems)
    name = data.get("pipeline")
    if name is None:
        problems.append(loc.problem(("pipeline",), "missing the pipeline's name ('pipeline: NAME')"))
    elif role_problem(name):
        problems.append(loc.problem(("pipeline",), f"pipeline name: {role_problem(name)}"))
    defaults = dict(DEFAULTS)
    raw_defaults = data.get("defaults", {}) or {}
    if not isinstance(raw_defaults, dict):
        problems.append(loc.problem(("defaults",), "defaults must be a mapping"))
        raw_defaults = {}
    _unknown(raw_defaults, DEFAULT_KEYS, ("defaults",), loc, problems)
    defaults.update({k: v for k, v in raw_defaults.items() if k in DEFAULT_KEYS})
    raw_stages = data.get("stages")
    stages: list[Stage] = []
    seen: dict[str, tuple] = {}
    if not isinstance(raw_stages, list) or not raw_stages:
        problems.append(loc.problem(("stages",), "stages must be a non-empty list"))
        raw_stages = []
    for index, raw in enumerate(raw_stages):
        path = ("stages", index)
        if not isinstance(raw, dict):
            problems.append(loc.problem(path, "each stage must be a mapping with at least 'name' and a handler"))
            continue
        before = len(problems)
        _unknown(raw, STAGE_KEYS, path, loc, problems)
        sname = raw.get("name")
        if sname is None:
            problems.append(loc.problem(path + ("name",), "missing the stage's name"))
        elif role_problem(sname):
            problems.append(loc.problem(path + ("name",), f"stage name: {role_problem(sname)}"))
        aliases = raw.get("aliases", []) or []
        if isinstance(aliases, str):
            aliases = [aliases]
        if not isinstance(aliases, list):
            problems.append(loc.problem(path + ("aliases",), "aliases must be a list of names"))
            aliases = []
        for a_index, alias in enumerate(aliases):
            if role_problem(alias):
                problems.append(loc.problem(path + ("aliases", a_index), f"alias: {role_problem(alias)}"))
        for label in [sname, *aliases]:
            if isinstance(label, str) and label in seen:
                problems.append(loc.problem(path + ("name",), f"{label!r} is already used by stage {seen[label][1]}"))
            elif isinstance(label, str):
                seen[label] = (index, raw_stages[index].get("name") if isinstance(raw_stages[index], dict) else index)
        pool = raw.get("pool", defaults["pool"])
        if role_problem(pool):
            problems.append(loc.problem(path + ("pool",), f"pool: {role_problem(pool)}"))
        params = raw.get("params", {}) or {}
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            problems.append(loc.problem(path + ("params",), "params must be a mapping of names to values"))
            params = {}
        handler = _parse_handler(raw, path, loc, params, problems)
        output = _parse_output(raw.get("output"), path + ("output",), loc, problems)
        timeout = _number(raw.get("timeout", defaults["timeout"]), path + ("timeout",), loc, problems, minimum=0.001,
                          what="timeout (seconds)")
        attempts = _number(raw.get("max_attempts", defaults["max_attempts"]), path + ("max_attempts",), loc, problems,
                           minimum=1, integer=True)
        backoff = _number(raw.get("retry_backoff", defaults["retry_backoff"]), path + ("retry_backoff",), loc,
                          problems, minimum=0, what="retry_backoff (seconds)")
        retry_timeouts = raw.get("retry_timeouts", defaults["retry_timeouts"])
        if not isinstance(retry_timeouts, bool):
            problems.append(loc.problem(path + ("retry_timeouts",), "retry_timeouts must be true or false"))
        if len(problems) == before and handler is not None:
            stages.append(Stage(name=sname, handler=handler, pool=pool, aliases=tuple(aliases), output=output,
                                timeout=float(timeout), max_attempts=int(attempts), retry_backoff=float(backoff),
                                retry_timeouts=bool(retry_timeouts), params=dict(params),
                                description=str(raw.get("description", ""))))
    if problems:
        raise SpecError(problems)
    return Pipeline(name=name, stages=tuple(stages), source=loc.file, description=str(data.get("description", "")),
                    locator=loc)


def load_pipeline(path: str | Path) -> Pipeline:
    data, loc = load_yaml(path)
    return parse_pipeline(data, loc)


def pipeline_from_dict(data: Mapping[str, Any], source: str = "<redis>") -> Pipeline:
    """Rebuild a pipeline stored in Redis (already validated when it was registered)."""
    return parse_pipeline(dict(data), Locator(source))
