"""Validation of the names that end up in Redis keys and on disk.

Session, stage and item names become parts of key names (``rvm:block7``) and of paths
(``{root}/{session}/{stage}/{item}.json``). A name must therefore never contain a path
separator, ``..``, a key separator or a Redis Cluster hash-tag brace.
"""
from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+@=,-]{0,199}")
_ROLE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_POOL = _ROLE

RULE = "letters, digits and . _ + @ = , - ; starting with a letter or digit; at most 200 characters"
ROLE_RULE = "a letter, then letters, digits, _ or - (at most 64 characters)"


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid session or item name, or None if it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not _NAME.fullmatch(value):
        return f"{value!r} is not a valid name ({RULE})"
    if ".." in value:
        return f"{value!r} must not contain '..'"
    return None


def role_problem(value: object) -> str | None:
    """Why ``value`` is not a valid stage/role or pool name, or None if it is."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if not _ROLE.fullmatch(value):
        return f"{value!r} is not a valid name ({ROLE_RULE})"
    return None


def is_name(value: object) -> bool:
    return name_problem(value) is None


def check_name(value: object, what: str = "name") -> str:
    problem = name_problem(value)
    if problem:
        raise ValueError(f"invalid {what}: {problem}")
    return value  # type: ignore[return-value]
