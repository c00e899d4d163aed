"""What is wrong with an input file, and where: the file, the line (and column), the field."""
from __future__ import annotations

from dataclasses import dataclass

from symphony.errors import SymphonyError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file: where it is and what is wrong."""

    file: str
    line: int | None
    field: str
    message: str
    column: int | None = None  # 1-based, where the file has columns (a CSV cell, a JSON character)

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        field = f" [{self.field}]" if self.field else ""
        return f"{where}:{field} {self.message}"


class SpecError(SymphonyError):
    """A pipeline or session file is invalid. Holds every problem found, not only the first."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid specification")


def file_problem(file: str, message: str, line: int | None = None, column: int | None = None) -> SpecError:
    """A :class:`SpecError` with one problem about a whole file (or one place in it)."""
    return SpecError([Problem(str(file), line, "", message, column)])
