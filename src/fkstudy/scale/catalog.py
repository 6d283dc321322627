"""A products CSV cut into chunks: the unit of work of the catalogue-scale jobs.

`plan(path, chunk_rows)` reads the file once, streaming (fkstudy.predict.records: the same reader, header check
and line numbers as `python -m fkstudy predict --input`), and cuts it after every `chunk_rows` readable records;
a chunk is a byte range of whole records plus the CSV line just before it, so `read_chunk` re-reads exactly its
records anywhere the file is, with the right line numbers, without reading the rest. Records that cannot be read
(more fields than the header) travel in their chunk with their error and are not counted: a chunk always holds
`chunk_rows` readable records (the last one fewer), so batches of a divisor of `chunk_rows` are the same whether
one process reads the whole file or each chunk is read on another machine.

A chunk travels as a plain JSON-able payload (`Products` as lists): Ray moves it between processes, and a
worker rebuilds the Products with `products(payload)`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import StudyError
from ..predict.batch import Products, _header, products_from, row_of
from ..predict.model import PredictInputError
from ..predict.records import records


class CatalogError(StudyError, ValueError):
    """The catalogue file cannot be used for this job (whole-file problem, ids missing or repeated)."""


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int      # byte offset of its first line (just after the previous record, or the header)
    stop: int       # byte offset just after its last record
    line: int       # the CSV line just before `start`
    rows: int       # records
    good: int       # records without a read error


@dataclass(frozen=True)
class Plan:
    path: str
    header: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    rows: int
    good: int
    stamp: tuple[int, int] = (0, 0)   # the file's size and mtime (ns) when planned

    @property
    def has_id(self) -> bool:
        return "id" in self.header

    def to_dict(self) -> dict:
        return {"path": self.path, "header": list(self.header), "rows": self.rows, "good": self.good,
                "chunks": [asdict(c) for c in self.chunks], "stamp": list(self.stamp)}

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        return cls(d["path"], tuple(d["header"]), tuple(Chunk(**c) for c in d["chunks"]), d["rows"], d["good"],
                   tuple(d["stamp"]))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def plan(path: str | Path, chunk_rows: int, unique_ids: bool = False) -> Plan:
    """Chunks of `chunk_rows` readable records. `unique_ids`: every record must have an id, none twice (the
    feature files' key), else CatalogError naming the lines."""
    path = Path(path).resolve()
    if not path.is_file():
        raise CatalogError(f"{path}: catalogue file not found (scale.catalog)")
    stamp = _stamp(path)
    header: list[str] | None = None
    chunks: list[Chunk] = []
    start = line = rows = good = total = total_good = 0
    seen: dict[str, int] = {}
    try:
        for rec in records(path):
            if header is None:
                header = _header(rec.fields, path)
                if unique_ids and "id" not in header:
                    raise CatalogError(f"{path.name}: no id column: the feature file is keyed by product id "
                                       f"(header: {header})")
                start, line = rec.end, rec.end_line
                continue
            row, error = row_of(rec.fields, header)
            if unique_ids:
                _check_id(path, row[header.index("id")].strip(), rec.line, seen)
            rows, good = rows + 1, good + (error == "")
            if good == chunk_rows:
                chunks.append(Chunk(len(chunks), start, rec.end, line, rows, good))
                total, total_good = total + rows, total_good + good
                start, line, rows, good = rec.end, rec.end_line, 0, 0
    except PredictInputError as exc:
        raise CatalogError(str(exc)) from None
    if header is None:
        raise CatalogError(f"{path}: empty file (no header)")
    if rows:
        chunks.append(Chunk(len(chunks), start, rec.end, line, rows, good))
        total, total_good = total + rows, total_good + good
    if not total:
        raise CatalogError(f"{path}: no product rows after the header")
    return Plan(str(path), tuple(header), tuple(chunks), total, total_good, stamp)


def _check_id(path: Path, pid: str, line: int, seen: dict[str, int]) -> None:
    if not pid:
        raise CatalogError(f"{path.name} line {line}: empty id (every product needs one: the feature file's key)")
    if pid in seen:
        raise CatalogError(f"{path.name} line {line}: id {pid!r} already on line {seen[pid]} (ids must be unique)")
    seen[pid] = line


def read_chunk(p: Plan, index: int) -> dict:
    """Chunk `index` of the plan as a payload (plain lists): its records, their lines and read errors."""
    c, header = p.chunks[index], list(p.header)
    if _stamp(Path(p.path)) != p.stamp:
        raise CatalogError(f"{p.path}: the file changed during the job (size or modification time): run it again")
    rows, lines, errors = [], [], []
    for rec in records(p.path, c.start, c.stop, c.line):
        row, error = row_of(rec.fields, header)
        rows.append(row)
        lines.append(rec.line)
        errors.append(error)
    if len(rows) != c.rows:
        raise CatalogError(f"{p.path}: chunk {index} (lines {c.line + 1}-) holds {len(rows)} records, {c.rows} when "
                           "planned: the file changed during the job: run it again")
    prods = products_from(rows, lines, errors, header, p.path)
    return {"chunk": index, "lines": prods.lines, "errors": prods.errors, "has_id": prods.has_id,
            "columns": {c: prods.frame[c].tolist() for c in prods.frame.columns}}


def products(payload: dict) -> Products:
    """The Products of a chunk payload (what a worker predicts or encodes)."""
    import pandas as pd

    frame = pd.DataFrame(payload["columns"], dtype=object)
    return Products(frame, list(payload["lines"]), list(payload["errors"]), bool(payload["has_id"]))
