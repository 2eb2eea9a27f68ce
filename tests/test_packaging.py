"""pyproject.toml: the metadata fresh installs read (setuptools deprecates the table form of ``license``)."""
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression_with_its_file():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = meta["project"]
    assert isinstance(project["license"], str), "license must be an SPDX string, not a table"
    assert all((ROOT / f).is_file() for f in project["license-files"])
    # SPDX license strings need setuptools >= 77 at build time
    setuptools = next(Requirement(r) for r in meta["build-system"]["requires"] if r.startswith("setuptools"))
    assert setuptools.specifier.contains(Version("77")) and not setuptools.specifier.contains(Version("76"))
