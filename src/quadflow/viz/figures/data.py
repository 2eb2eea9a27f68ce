"""The saved form of a figure: named tables (CSV) and a metadata dict (JSON).

``FigureData(name, tables={"sim": rows, "theory": rows}, meta={...})`` is written as
``<name>.csv`` (table ``sim``), ``<name>_<table>.csv`` (the others) and ``<name>.json``
(``meta``: parameters, agreement numbers). Rows are flat dicts of numbers and strings.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from quadflow.io import atomic_write_text, dumps, jsonable

MAIN_TABLE = "sim"


def _cell(text: str):
    """CSV cell back to a number where it is one (empty cell: NaN)."""
    if text == "":
        return math.nan
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


@dataclass
class FigureData:
    name: str
    tables: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def table_path(self, folder: Path, table: str) -> Path:
        suffix = "" if table == MAIN_TABLE else f"_{table}"
        return Path(folder) / f"{self.name}{suffix}.csv"

    def save(self, folder: Path) -> list[Path]:
        """Write every table and the metadata into ``folder``; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for table, rows in self.tables.items():
            path = self.table_path(folder, table)
            columns = list(dict.fromkeys(k for r in rows for k in r))
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=columns, restval="")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: "" if (c := jsonable(v)) is None else c for k, v in r.items()})
            atomic_write_text(path, text.getvalue())
            paths.append(path)
        meta_path = folder / f"{self.name}.json"
        atomic_write_text(meta_path, dumps({**self.meta, "tables": sorted(self.tables)}, indent=2))
        return paths + [meta_path]

    @classmethod
    def load(cls, folder: Path, name: str) -> "FigureData":
        """Read back what :meth:`save` wrote (numbers parsed, missing values NaN)."""
        folder = Path(folder)
        meta = json.loads((folder / f"{name}.json").read_text())
        data = cls(name, meta=meta)
        for table in meta.pop("tables"):
            with open(data.table_path(folder, table), newline="") as fh:
                data.tables[table] = [{k: _cell(v) for k, v in r.items()} for r in csv.DictReader(fh)]
        return data

    def column(self, table: str, key: str, **where) -> list:
        """Values of ``key`` in ``table`` over the rows matching ``where`` (column == value)."""
        return [r[key] for r in self.tables[table] if all(r.get(k) == v for k, v in where.items())]
