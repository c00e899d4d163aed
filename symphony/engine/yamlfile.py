"""YAML loading that remembers where every value came from, so errors can name the line.

``load_yaml(path)`` returns the plain data (dicts, lists, scalars) and a :class:`Locator`
that maps a field path such as ``("stages", 2, "timeout")`` to its line number. Duplicate
mapping keys, which plain PyYAML silently accepts, are reported as problems.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, SpecError

try:  # libyaml is much faster for large session files
    _Loader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

PathKey = tuple[Any, ...]


class Locator:
    """Line numbers (1-based) of the values of a YAML document, by field path."""

    def __init__(self, file: str, lines: dict[PathKey, int] | None = None):
        self.file = file
        self.lines: dict[PathKey, int] = lines or {}

    def line(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: PathKey, message: str) -> Problem:
        return Problem(self.file, self.line(path), field_name(path), message)


def field_name(path: PathKey) -> str:
    """``("stages", 2, "timeout")`` -> ``stages[2].timeout``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _walk(node: yaml.Node, path: PathKey, lines: dict[PathKey, int], problems: list[Problem], file: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key in seen:
                problems.append(Problem(file, key_node.start_mark.line + 1, field_name(path + (key,)),
                                        f"duplicate key {key!r} (first defined on line {seen[key]})"))
            else:
                seen[key] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, problems, file)
            lines[path + (key,)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            _walk(child, path + (index,), lines, problems, file)


def parse_yaml(text: str, file: str, *, locate: bool = True) -> tuple[Any, Locator]:
    """Parse YAML ``text`` (named ``file`` in errors). Raises :class:`SpecError` on bad YAML."""
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: no mark, but a position
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character or "?")
        raise SpecError([Problem(file, line, "", f"invalid YAML: character #x{char:04x} is not allowed "
                                                 f"({exc.reason})")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise SpecError([Problem(file, line, "", f"invalid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, None, "", f"invalid YAML: {exc}")]) from None
    lines: dict[PathKey, int] = {}
    problems: list[Problem] = []
    if locate:
        node = yaml.compose(text, Loader=_Loader)
        if node is not None:
            _walk(node, (), lines, problems, file)
        else:  # an empty document: what is missing is missing from line 1
            lines[()] = 1
    if problems:
        raise SpecError(problems)
    return data, Locator(file, lines)


def load_yaml(path: str | Path, *, locate: bool = True) -> tuple[Any, Locator]:
    """Read and parse a YAML file; a missing or unreadable file is a :class:`SpecError` too."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(str(path), None, "", "file not found")]) from None
    except OSError as exc:
        raise SpecError([Problem(str(path), None, "", f"cannot read file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SpecError([Problem(str(path), line, "", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at "
                                                      f"line {line} ({exc.reason})")]) from None
    return parse_yaml(text, str(path), locate=locate)
