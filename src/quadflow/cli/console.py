"""What the app prints besides its log: Python warnings as one line each.

:func:`route_warnings` sends every warning to the logger ``quadflow.warnings``, which the app's logging
config (conf/hydra/job_logging/quadflow.yaml) writes to stderr as ``warning: <message>`` and to run.log
with its time; the source line Python prints by default is left out.
"""
from __future__ import annotations

import logging
import warnings

WARNINGS_LOGGER = "quadflow.warnings"


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` replacement: the message alone, on the ``quadflow.warnings`` logger."""
    logging.getLogger(WARNINGS_LOGGER).warning(" ".join(str(message).split()))


def route_warnings() -> None:
    """Show Python warnings through :func:`show_warning` from now on."""
    warnings.showwarning = show_warning
