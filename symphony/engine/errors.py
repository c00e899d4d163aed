"""Error types raised by the engine.

Every error that reaches an operator carries enough context to act on: spec errors name the
file, the line and the field; connection errors never contain a password.
"""
from __future__ import annotations

from dataclasses import dataclass


class SymphonyError(Exception):
    """Base class of every error the engine raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        field = f" [{self.field}]" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(SymphonyError):
    """A pipeline or session file is invalid. Holds every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid specification")


class ConfigError(SymphonyError):
    """Bad command-line or environment configuration."""


class RedisUnavailable(SymphonyError):
    """Redis could not be reached (the message never contains a password)."""


class CredentialsRefused(RedisUnavailable):
    """Redis answered but refused the user name or password: waiting will not help."""


class SessionConflict(SymphonyError):
    """A session name is already in use by a different definition, or is in the wrong state."""


class UnknownSession(SymphonyError):
    """The session is not registered in Redis."""
