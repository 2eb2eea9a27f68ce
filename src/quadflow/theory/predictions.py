"""Deprecated import path of the app's theory components: use :mod:`quadflow.cli.theories`.

``RunInfo``, ``Prediction``, ``Population``, ``LongTime`` and ``DMFT`` are served from
:mod:`quadflow.cli.theories` on first access, with a ``DeprecationWarning`` naming that path
(Hydra configs that still name ``quadflow.theory.predictions.<class>`` as ``_target_`` keep
working). This path is kept for one release. Importing this module loads nothing of
:mod:`quadflow.cli`.
"""
from __future__ import annotations

import importlib
import warnings

NEW_PATH = "quadflow.cli.theories"
_NAMES = ("DMFT", "LongTime", "Population", "Prediction", "RunInfo")

__all__ = list(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        warnings.warn(f"quadflow.theory.predictions is deprecated: import {name} from {NEW_PATH} "
                      f"(Hydra: _target_: {NEW_PATH}.{name})", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(NEW_PATH), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
