"""A products CSV read record by record, streaming: each record with the CSV line it starts and ends on and the
byte offset where it ends, so a reader can later re-read any run of whole records from its byte range.

`python -m fkstudy predict --input` (fkstudy.predict.batch) and the catalogue-scale jobs (fkstudy.scale.catalog)
read products through this one function, so they number lines and see records the same way. Lines end with
\\n, \\r\\n or \\r (as a file opened with newline=""), the file is decoded as UTF-8 line by line (a byte-order
mark at the start is skipped) and blank lines are skipped but counted.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

from .model import PredictInputError

BLOCK = 1 << 20
_EOL = re.compile(rb"\r\n|\n|\r")
BOM = b"\xef\xbb\xbf"


class Record(NamedTuple):
    line: int            # the CSV line the record starts on (the file's first line is 1)
    end_line: int        # the line it ends on (a quoted newline makes a record span several)
    end: int             # byte offset just after its last line
    fields: list[str]


def byte_lines(fh: BinaryIO, start: int = 0, stop: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(line with its terminator, byte offset after it) for the lines of fh[start:stop], read by blocks."""
    fh.seek(start)
    remaining = None if stop is None else stop - start
    buf, pos, eof = b"", start, False          # pos: file offset of buf[0]
    while True:
        if not eof:
            n = BLOCK if remaining is None else min(BLOCK, remaining)
            data = fh.read(n) if n > 0 else b""
            if remaining is not None:
                remaining -= len(data)
            eof, buf = not data, buf + data
        cut = 0
        for m in _EOL.finditer(buf):
            if not eof and m.end() == len(buf) and buf[-1:] == b"\r":
                break                           # a \r\n may be split between two blocks
            yield buf[cut:m.end()], pos + m.end()
            cut = m.end()
        buf, pos = buf[cut:], pos + cut
        if eof:
            if buf:
                yield buf, pos + len(buf)
            return


def records(path: str | Path, start: int = 0, stop: int | None = None, line: int = 0) -> Iterator[Record]:
    """The non-blank CSV records of path[start:stop] (start: 0 or the end of a record); `line` is the line number
    just before `start`. Not UTF-8, a broken CSV or an unreadable file raise PredictInputError naming the file and
    where."""
    path = Path(path)
    state = {"end": start}

    def text(fh: BinaryIO) -> Iterator[str]:
        for raw, end in byte_lines(fh, start, stop):
            begin = end - len(raw)
            if begin == 0 and raw.startswith(BOM):
                raw, begin = raw[len(BOM):], len(BOM)
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise PredictInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {begin + exc.start})") from None
            state["end"] = end
            yield decoded

    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise PredictInputError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        reader = csv.reader(text(fh))
        last = line
        try:
            for fields in reader:
                first, last = last + 1, line + reader.line_num
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue  # a blank line
                yield Record(first, last, state["end"], fields)
        except csv.Error as exc:
            raise PredictInputError(f"{path}: not a readable CSV at line {line + reader.line_num} ({exc})") from None
        except OSError as exc:
            raise PredictInputError(f"{path}: cannot read ({exc.strerror})") from None
