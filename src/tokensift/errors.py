"""Errors the user can fix. The CLI prints these as one paragraph, without a traceback, and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Something in the user's input (a file, a row, a config key, an argument) is wrong."""


class DataError(UserError):
    """A bad input row. The message names the file, the row (0-based index in the file) and the field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str):
        self.source = source
        self.row = row
        self.field = field
        self.problem = problem
        where = source
        if row is not None:
            where += f", row {row}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")
