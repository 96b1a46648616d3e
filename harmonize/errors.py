"""Errors a user's input can cause, and the exit status each gives on the command line.

Every failure to read a user's file (a table, a mapping YAML, a dataset folder)
reaches the ``harmonize`` command as an :class:`InputError` (or a subclass): one
paragraph naming the file, the row or line, the field and what to do. Anything
else that escapes is a bug in this package, reported as an internal error
(:data:`EXIT_INTERNAL`) with where to report it; the traceback only under ``--debug``.
"""

from __future__ import annotations

from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 1  # a file cannot be read as mapped (names file, row, field)
EXIT_USAGE = 2  # the command line itself (argparse's own status)
EXIT_STRICT = 3  # --strict: some record was quarantined or some value rejected
EXIT_NO_ROWS = 4  # no usable row at all (every record quarantined, or a header-only file)
EXIT_INTERNAL = 70  # a bug (sysexits' EX_SOFTWARE)

REPORT_BUGS = (
    "the fedjax_rhd maintainers (the project's issue tracker), with the command line and its --debug output"
)


class InputError(ValueError):
    """A user's input cannot be used; the message names file, row (or line) and field.

    Attributes:
        path: the file at fault.
        row: where in it (a data row, ``"12 (line)"``, ``"1 (header)"``, ``0`` for the whole file).
        field: the column, mapping key or ``(file)``-like part at fault.
    """

    def __init__(self, path: str | Path, row: str | int, field: str, message: str) -> None:
        self.path, self.row, self.field = str(path), row, field
        super().__init__(f"{path}: row {row}, field {field!r}: {message}")


class NoUsableRows(InputError):
    """A source gave no usable row (every record quarantined, or none at all)."""
