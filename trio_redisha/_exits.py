"""Process exit codes and the one-line failure, shared by the command line and the demo.

The demo (``_demo.py``) runs as ``trio-redisha demo`` but handles its own
signals; both need the same codes and the same "fail with one line" error,
and neither should import the other for them.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CommandError",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM


class CommandError(Exception):
    """A failure that is not a usage mistake; reported on one line with exit code 1."""
