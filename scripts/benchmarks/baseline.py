"""The previous implementation of quadflow's GD step (commit 9a5c334), importable beside the current one.

quadflow now trains through ``loss.backward(); optimizer.step()``. The
benchmark times that step against the one it replaced: the hand-written
gradient field ``quadflow.model.EmpiricalField`` and the Euler update
``w + h * quadflow.flow.velocity(w, drift, lam)`` of commit 9a5c334. Both run in
the same process, so their ratio is measured in the same run and under the
same load, not against numbers from another day.

:func:`load` extracts that commit's ``src/quadflow`` with ``git archive``,
renames the package to ``quadflow_9a5c334`` (its own imports rewritten to
match), caches the result under ``~/.cache/quadflow/`` (a temporary directory
when that is not writable) and imports its ``model`` and ``flow`` modules. It
raises :class:`BaselineUnavailable`, with the reason, when git, the checkout or
the commit is missing; the benchmark then records the baseline as skipped.
"""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

COMMIT = "9a5c334"
PACKAGE = f"quadflow_{COMMIT}"
REPO = Path(__file__).resolve().parents[2]
CACHE = Path.home() / ".cache" / "quadflow"
# ``quadflow.x`` and ``from quadflow import`` -> the renamed package (not ``quadflow_...`` or ``myquadflow.``).
IMPORTS = re.compile(r"\bquadflow(?=\.)|(?<=\bfrom )quadflow(?= )")


class BaselineUnavailable(RuntimeError):
    """The baseline cannot be loaded here (no git, not a checkout, commit missing)."""


@dataclass(frozen=True)
class Baseline:
    """The 9a5c334 field class and velocity function, and where their source was extracted."""

    commit: str
    path: Path
    model: ModuleType
    flow: ModuleType

    @property
    def EmpiricalField(self):  # noqa: N802 - the class, under its own name
        return self.model.EmpiricalField

    @property
    def velocity(self):
        return self.flow.velocity

    def module(self, name: str) -> ModuleType:
        """Any module of the baseline package, e.g. ``module("theory.dmft")`` (its DMFT solver)."""
        return importlib.import_module(f"{PACKAGE}.{name}")


def _git(*args: str) -> bytes:
    """stdout of ``git -C <repo> args``; :class:`BaselineUnavailable` when git is missing or fails."""
    try:
        proc = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=False)
    except OSError as err:
        raise BaselineUnavailable(f"git is not available: {err}") from None
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
        raise BaselineUnavailable(f"git {' '.join(args)}: {why}")
    return proc.stdout


def _extract(full: str, dest: Path) -> None:
    """``git archive <commit> src/quadflow`` into ``dest/quadflow_9a5c334`` with its imports rewritten."""
    archive = _git("archive", "--format=tar", full, "src/quadflow")
    staging = Path(tempfile.mkdtemp(prefix=f"{PACKAGE}-", dir=dest.parent))
    try:
        with tempfile.TemporaryFile() as fh:
            fh.write(archive)
            fh.seek(0)
            with tarfile.open(fileobj=fh) as tar:
                tar.extractall(staging, filter="data")
        package = staging / PACKAGE
        (staging / "src" / "quadflow").rename(package)
        (staging / "src").rmdir()
        for path in package.rglob("*.py"):
            path.write_text(IMPORTS.sub(PACKAGE, path.read_text()))
        (staging / "COMMIT").write_text(full + "\n")
        shutil.rmtree(dest, ignore_errors=True)
        staging.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cache_root() -> Path:
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=CACHE):
            return CACHE
    except OSError:
        return Path(tempfile.mkdtemp(prefix="quadflow-cache-"))


def load(commit: str = COMMIT) -> Baseline:
    """The 9a5c334 ``model`` and ``flow`` modules (extracted once, then cached); raises :class:`BaselineUnavailable`."""
    full = _git("rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").decode().strip()
    dest = _cache_root() / f"baseline-{commit}"
    marker = dest / "COMMIT"
    if not (marker.is_file() and marker.read_text().strip() == full and (dest / PACKAGE / "model.py").is_file()):
        _extract(full, dest)
    if str(dest) not in sys.path:
        sys.path.insert(0, str(dest))
    try:
        model, flow = (importlib.import_module(f"{PACKAGE}.{name}") for name in ("model", "flow"))
    except ImportError as err:
        raise BaselineUnavailable(f"importing the {commit} package from {dest}: {err}") from None
    return Baseline(commit=full, path=dest, model=model, flow=flow)


def load_or_reason(commit: str = COMMIT) -> tuple[Baseline | None, str | None]:
    """``(baseline, None)``, or ``(None, why it is skipped)``."""
    try:
        return load(commit), None
    except BaselineUnavailable as err:
        return None, str(err)
