"""Error types raised by the engine.

Every error that reaches an operator carries enough context to act on: spec errors name the
file, the line and the field; connection errors never contain a password.
"""
from __future__ import annotations

from symphony.errors import SymphonyError
from symphony.spec import Problem, SpecError

__all__ = ["ConfigError", "Problem", "RedisUnavailable", "SessionConflict", "SpecError", "SymphonyError",
           "UnknownSession"]


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
