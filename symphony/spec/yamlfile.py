"""YAML loading that remembers where every value came from, within bounds, and fast for long item lists.

``load_yaml(path)`` returns the plain data (dicts, lists, scalars) and a :class:`Locator` that maps
a field path such as ``("stages", 2, "timeout")`` to its line number. Duplicate mapping keys,
which plain PyYAML silently accepts, are reported as problems.

Every file is bounded (:mod:`symphony.spec.limits`): its size is checked before it is read; a
pass of libyaml's event parser (C) checks nesting depth and how many nodes aliases add before
any node is built, so neither a "billion laughs" file nor a deeply nested one costs more than
reading it. PyYAML then composes the document once (the nodes give the lines) and builds the
data from those nodes.

A session file's ``items`` list written one item per line, as operators write it
(``  - {id: row-000001, vines: 38}``), takes a fast path instead: each line is checked against
a strict grammar of flow mappings of plain or simply quoted scalars (resolved by PyYAML's own
resolver, so values are the same as PyYAML's), the lines are remembered by their offsets, and
the entries are built one at a time as they are read (:class:`FlowItems`); the rest of the file
goes through PyYAML. A list that is written any other way goes through PyYAML whole, up to
``Limits.yaml_bytes``.
"""
from __future__ import annotations

import re
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterator

import yaml

from .limits import LIMITS, Limits
from .problems import Problem, SpecError, file_problem

try:  # libyaml: the C parser
    _Loader = yaml.CSafeLoader  # type: ignore[attr-defined]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

PathKey = tuple[Any, ...]


class Locator:
    """Line numbers (1-based) of the values of a YAML document, by field path.

    ``sequences`` holds, for a list read by the fast path, the line of each of its entries
    (every field of such an entry is on the entry's line).
    """

    def __init__(self, file: str, lines: dict[PathKey, int] | None = None,
                 sequences: dict[PathKey, "FlowItems"] | None = None):
        self.file = file
        self.lines: dict[PathKey, int] = lines or {}
        self.sequences: dict[PathKey, FlowItems] = sequences or {}

    def _in_sequence(self, path: PathKey) -> tuple["FlowItems", int, PathKey] | None:
        for prefix, flow in self.sequences.items():
            n = len(prefix)
            if len(path) > n and path[:n] == prefix and isinstance(path[n], int) and 0 <= path[n] < len(flow):
                return flow, path[n], path[n + 1:]
        return None

    def line(self, path: PathKey) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        path = tuple(path)
        found = self._in_sequence(path) if self.sequences else None
        if found is not None:
            return found[0].lines[found[1]]
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def has(self, path: PathKey) -> bool:
        """Whether ``path`` itself (not only an ancestor) is in the document."""
        path = tuple(path)
        found = self._in_sequence(path) if self.sequences else None
        if found is not None:
            return found[0].has(found[1], found[2])
        return path in self.lines

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


# --- reading the file ---------------------------------------------------------------------------------
def read_text(path: str | Path, max_bytes: int, what: str = "file") -> str:
    """The UTF-8 text of ``path``; a missing, unreadable, oversized or non-UTF-8 file is a :class:`SpecError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise _too_large(path, size, max_bytes, what)
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise file_problem(str(path), "file not found") from None
    except IsADirectoryError:
        raise file_problem(str(path), "is a directory, not a file") from None
    except OSError as exc:
        raise file_problem(str(path), f"cannot read file: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:  # it grew while we looked
        raise _too_large(path, len(raw), max_bytes, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise file_problem(str(path), f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line} ({exc.reason})",
                           line) from None


def _too_large(path: Path, size: int, limit: int, what: str) -> SpecError:
    return file_problem(str(path), f"the {what} is {size / 2**20:.1f} MiB, more than the limit of "
                                   f"{limit / 2**20:.0f} MiB")


# --- the PyYAML path: bounded scan, one compose, lines from the nodes -----------------------------------
def _yaml_error(exc: Exception, text: str, file: str) -> SpecError:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow: no mark, but a position
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character or "?")
        return file_problem(file, f"invalid YAML: character #x{char:04x} is not allowed ({exc.reason})", line)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        return file_problem(file, f"invalid YAML: {exc.problem or exc}", mark.line + 1 if mark is not None else None)
    return file_problem(file, f"invalid YAML: {exc}")


_START = (yaml.SequenceStartEvent, yaml.MappingStartEvent)
_END = (yaml.SequenceEndEvent, yaml.MappingEndEvent)


def _scan(text: str, file: str, limits: Limits) -> None:
    """One pass of the event parser: nesting depth and the nodes that aliases add, bounded."""
    sizes: dict[str, int] = {}  # nodes under each anchor, aliases expanded
    stack: list[list] = []  # open collections: [anchor, nodes so far]
    added = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, _START):
            stack.append([event.anchor, 1])
            if len(stack) > limits.depth:
                raise file_problem(file, f"nested more than {limits.depth} levels deep", event.start_mark.line + 1)
            continue
        if isinstance(event, _END):
            anchor, nodes = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, nodes = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, nodes = None, sizes.get(event.anchor, 1)
            added += nodes
            if added > limits.alias_nodes:
                raise file_problem(file, f"aliases (*{event.anchor}) expand to more than {limits.alias_nodes:,} "
                                         "nodes; write the values out, or use fewer aliases",
                                   event.start_mark.line + 1)
        else:
            continue
        if anchor:
            sizes[anchor] = nodes
        if stack:
            stack[-1][1] += nodes


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


def _unbuildable(node: yaml.Node) -> yaml.Node:
    """The first scalar of ``node`` whose value cannot be built (e.g. the date 2026-13-45)."""
    constructor = yaml.constructor.SafeConstructor()
    todo = [node]
    while todo:
        current = todo.pop()
        if isinstance(current, yaml.ScalarNode):
            try:
                constructor.construct_object(current)
            except Exception:
                return current
        elif isinstance(current, yaml.MappingNode):
            todo.extend(v for pair in reversed(current.value) for v in reversed(pair))
        elif isinstance(current, yaml.SequenceNode):
            todo.extend(reversed(current.value))
    return node


def _compose(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        try:
            return loader.construct_document(node), node
        except yaml.YAMLError:
            raise
        except Exception as exc:  # a value PyYAML recognises but cannot build
            bad = _unbuildable(node)
            raise file_problem(file, f"invalid YAML: cannot read the value {str(bad.value)[:80]!r}: {exc}",
                               bad.start_mark.line + 1) from None
    finally:
        loader.dispose()


def parse_yaml(text: str, file: str, *, limits: Limits = LIMITS) -> tuple[Any, Locator]:
    """Parse YAML ``text`` (named ``file`` in errors). Raises :class:`SpecError` on bad YAML."""
    try:
        _scan(text, file, limits)
        data, node = _compose(text, file)
    except SpecError:
        raise
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, text, file) from None
    lines: dict[PathKey, int] = {}
    problems: list[Problem] = []
    if node is not None:
        _walk(node, (), lines, problems, file)
    else:  # an empty document: what is missing is missing from line 1
        lines[()] = 1
    if problems:
        raise SpecError(problems)
    return data, Locator(file, lines)


def load_yaml(path: str | Path, *, limits: Limits = LIMITS, what: str = "file") -> tuple[Any, Locator]:
    """Read and parse a YAML file (at most ``limits.yaml_bytes``); problems are :class:`SpecError`."""
    text = read_text(path, limits.yaml_bytes, what)
    return parse_yaml(text, str(path), limits=limits)


# --- the fast path for a list written one entry per line ---------------------------------------------------
_QUOTED = r'"[^"\\\n\r]*"|\'[^\'\n\r]*\''
_PLAIN = r'(?:[A-Za-z0-9_./+]|-(?=[A-Za-z0-9_.]))[A-Za-z0-9_./+@=~-]*|~'
_SCALAR = f"(?:{_QUOTED}|{_PLAIN})"
_PAIR = re.compile(f"({_SCALAR}) *: +({_SCALAR})")
_MAP = rf"\{{ *(?:{_SCALAR} *: +{_SCALAR}(?: *, *{_SCALAR} *: +{_SCALAR})*)? *\}}"
_ENTRY = re.compile(rf"( *)- +(?:({_MAP})|({_SCALAR}))(?: +#[^\n]*)? *\r?")
_SKIP = re.compile(r" *(?:#[^\n]*)?\r?")
_KEY = r"^{key}: *(?:#[^\n]*)?\r?$"
_SAFE_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "null", "timestamp"))
_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


class _NotFast(Exception):
    """This list is not written one plain entry per line: read it with PyYAML."""


_WILDCARD = tuple(_RESOLVERS.get(None, []))
_BY_FIRST = {c: tuple(r) + _WILDCARD for c, r in _RESOLVERS.items() if c is not None}


def plain_scalar(token: str) -> Any:
    """The value PyYAML gives the plain scalar ``token`` (YAML 1.1 implicit types)."""
    resolvers = _BY_FIRST.get(token[0], _WILDCARD)
    if not resolvers:
        return token
    if token.isdigit() and (token[0] != "0" or len(token) == 1):
        return int(token)
    for tag, regexp in resolvers:
        if regexp.match(token):
            if tag not in _SAFE_TAGS:
                raise _NotFast(token)
            return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, token))
    return token


def _scalar(token: str) -> Any:
    if token[0] in "\"'":
        return token[1:-1]
    return plain_scalar(token)


_UNREADABLE = object()


class FlowItems(Sequence):
    """The entries of a list written one per line, built when they are read: nothing is kept but
    the file's text and, per entry, where its value is in the text and its line."""

    def __init__(self, text: str, file: str, starts: array, ends: array, lines: array):
        self.text, self.file, self.starts, self.ends, self.lines = text, file, starts, ends, lines
        self.keys: dict[str, Any] = {}  # the values of the keys seen (the same few on every line)

    def __len__(self) -> int:
        return len(self.starts)

    def _entry(self, index: int, problems: list[Problem] | None, path: PathKey) -> Any:
        try:
            return self._build(index, problems, path)
        except Exception as exc:  # a value PyYAML recognises but cannot build (the date 2026-13-45)
            problem = Problem(self.file, self.lines[index], field_name(path + (index,)),
                              f"invalid YAML: cannot read this entry: {exc}")
            if problems is None:
                raise SpecError([problem]) from None
            problems.append(problem)
            return _UNREADABLE

    def _build(self, index: int, problems: list[Problem] | None, path: PathKey) -> Any:
        text, start, end = self.text, self.starts[index], self.ends[index]
        if text[start] != "{":
            return _scalar(text[start:end])
        pairs = _PAIR.findall(text, start, end)
        keys = self.keys
        entry = {}
        for k, v in pairs:
            key = keys.get(k)
            if key is None:
                key = keys[k] = _scalar(k)
            entry[key] = v[1:-1] if v[0] in "\"'" else plain_scalar(v)
        if len(entry) != len(pairs) and problems is not None:
            self._duplicates(index, pairs, problems, path)
        return entry

    def _duplicates(self, index: int, pairs: list, problems: list[Problem], path: PathKey) -> None:
        seen: set = set()
        for k, _ in pairs:
            key = _scalar(k)
            if key in seen:
                problems.append(Problem(self.file, self.lines[index], field_name(path + (index, key)),
                                        f"duplicate key {key!r} (first defined on line {self.lines[index]})"))
            seen.add(key)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._entry(i, None, ()) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._entry(index, None, ())

    def has(self, index: int, rest: PathKey) -> bool:
        """Whether entry ``index`` has the field path ``rest`` (one key deep: entries are flat)."""
        if not rest:
            return True
        entry = self._entry(index, None, ())
        return len(rest) == 1 and isinstance(entry, dict) and rest[0] in entry

    def entries(self, problems: list[Problem], path: PathKey) -> Iterator[tuple[int, Any]]:
        """(index, entry) of every entry, each a new object (the caller may change it); duplicate
        keys within an entry go to ``problems``."""
        for index in range(len(self.starts)):
            entry = self._entry(index, problems, path)
            if entry is not _UNREADABLE:
                yield index, entry


class _TooMany(Exception):
    """More entries than the limit (counted before they are built)."""


def _flow_block(text: str, start: int, first_line: int, most: int) -> tuple[int, tuple[array, array, array]]:
    """(end offset, (value starts, value ends, lines)) of the list that starts at ``start``;
    _NotFast if any of its lines is not one plain entry, _TooMany past ``most`` entries."""
    starts, ends, lines = array("q"), array("q"), array("l")
    indent = None
    pos, line, size = start, first_line, len(text)
    while pos < size:
        end = text.find("\n", pos)
        end = size if end < 0 else end
        match = _ENTRY.fullmatch(text, pos, end)
        if match is not None:
            if indent is None:
                indent = match.group(1)
            elif match.group(1) != indent:
                raise _NotFast("mixed indentation")
            group = 2 if match.start(2) >= 0 else 3
            starts.append(match.start(group))
            ends.append(match.end(group))
            lines.append(line)
            if len(starts) > most:
                raise _TooMany(line)
        elif not _SKIP.fullmatch(text, pos, end):
            if text[pos] in " -\t":
                raise _NotFast(f"line {line}")
            break  # the next top-level key
        pos, line = end + 1, line + 1
    if not starts:
        raise _NotFast("empty")
    return min(pos, size), (starts, ends, lines)


def split_flow_list(text: str, key: str, most: int) -> tuple[str, int, int, FlowItems | None]:
    """Take the top-level list ``key:`` out of ``text`` when it is written one entry per line:
    (the text with ``key: []`` in its place and its lines kept blank, how many characters of it
    are not those blank lines, the key's line, the entries)."""
    found = re.search(_KEY.format(key=re.escape(key)), text, re.M)
    if found is None:
        return text, len(text), 0, None
    key_line = text.count("\n", 0, found.start()) + 1
    try:
        end, spans = _flow_block(text, found.end() + 1, key_line + 1, most)
    except _NotFast:
        return text, len(text), 0, None
    blank = "\n" * text.count("\n", found.end(), end)
    head, tail = text[:found.start()] + key + ": []", text[end:]
    return head + blank + tail, len(head) + len(tail), key_line, FlowItems(text, "", *spans)


def load_yaml_with_list(path: str | Path, key: str, *, limits: Limits = LIMITS,
                        what: str = "file") -> tuple[Any, Locator]:
    """Like :func:`load_yaml`, with the fast path for the top-level list ``key`` (its entries are a
    :class:`FlowItems`): the file may be ``limits.session_bytes`` large, what is not that list
    ``limits.yaml_bytes``."""
    file = str(path)
    text = read_text(path, limits.session_bytes, what)
    try:
        header, general, key_line, flow = split_flow_list(text, key, limits.items)
    except _TooMany:
        raise file_problem(file, f"more than {limits.items:,} {key}, the limit per session; "
                                 "split the work into several sessions") from None
    if general > limits.yaml_bytes:
        raise file_problem(file, f"the {what} is {len(text) / 2**20:.1f} MiB; over {limits.yaml_bytes / 2**20:.0f} MiB "
                                 f"its {key} must be written one per line (- {{id: ..., field: ...}}), or read "
                                 "from a CSV or JSON Lines file (items_from)")
    data, loc = parse_yaml(header, file, limits=limits)
    if flow is None:
        return data, loc
    if not (isinstance(data, dict) and data.get(key) == [] and loc.lines.get((key,)) == key_line):
        # the line that looked like the key was inside something else (a quoted string)
        if len(text) > limits.yaml_bytes:
            raise file_problem(file, f"line {key_line} looks like '{key}:' but is not the file's {key}", key_line)
        return parse_yaml(text, file, limits=limits)
    flow.file = file
    data[key] = flow
    loc.sequences[(key,)] = flow
    return data, loc


def entries(value: Any, problems: list[Problem], path: PathKey) -> Iterator[tuple[int, Any]]:
    """(index, entry) of a list as loaded: a plain list, or a :class:`FlowItems`."""
    if isinstance(value, FlowItems):
        return value.entries(problems, path)
    return enumerate(value)


def is_list(value: Any) -> bool:
    return isinstance(value, (list, FlowItems))
