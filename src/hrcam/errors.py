"""Exceptions shared by the library and the CLI."""
from __future__ import annotations


class UserError(ValueError):
    """A problem the user can fix (bad path, bad option, mismatched weights).

    The CLI prints it as one line and exits with code 2; library callers get a ``ValueError``.
    """
