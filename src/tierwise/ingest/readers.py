"""Readers: any supported file → its header and a stream of Arrow record batches with a `_line` column.

Text files arrive as strings (every value is parsed later, in the engine, where the whole column can be
seen); Parquet keeps its types. `_line` is the line of the record in the file (1-based, header counted) or,
for Parquet, the row number, so that every quarantined value can be found again by the user.
"""

from __future__ import annotations

import codecs
import csv
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from charset_normalizer import from_bytes

from tierwise.errors import UserError
from tierwise.ingest.excel import open_excel
from tierwise.ingest.source import LINE, HeaderScore, ReadLimits, Source, dedupe_names

SEPARATORS = {",": ",", ";": ";", "\\t": "\t", "\t": "\t", "tab": "\t", "|": "|", "whitespace": "whitespace"}
_CANDIDATES = [",", ";", "\t", "|"]
SAMPLE_BYTES = 1 << 20
BATCH_ROWS = 1 << 20

ProgressFn = Callable[[int], None]  # bytes or rows consumed so far


def open_source(
    path: Path,
    *,
    sep: str | None = None,
    encoding: str | None = None,
    sheet: str | None = None,
    header: bool = True,
    progress: ProgressFn | None = None,
    header_row: int | None = None,
    header_score: HeaderScore | None = None,
    limits: ReadLimits | None = None,
) -> Source:
    """`header_row` (1-based) overrides header detection in spreadsheets; `header_score` drives it."""
    if not path.exists():
        raise UserError("file not found; check the path and name", file=str(path))
    if path.is_dir():
        raise UserError("is a folder, not a file; name the file(s) to ingest", file=str(path))
    size = path.stat().st_size
    if size == 0:
        raise UserError("the file is empty; export it again with its rows", file=str(path))
    suffix = path.suffix.lower()
    with path.open("rb") as fh:
        head = fh.read(8)
    if suffix == ".parquet" or head[:4] == b"PAR1":
        return _open_parquet(path, size, progress)
    if (
        suffix in {".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"}
        or head[:4] == b"PK\x03\x04"
        or head == (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
    ):
        return open_excel(path, size, sheet, header, header_row, header_score, limits)
    return _open_text(path, size, sep, encoding, header, progress)


# ---------------------------------------------------------------- text

# The line breaks pyarrow ends a record on; `_line` counts lines by exactly these (as Python's csv module
# does with newline=""), never by str.splitlines, which also splits on form feeds and U+2028.
_BREAK = re.compile(r"\r\n|\r|\n")
_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
# Stands in for an undecodable byte while a file is scanned for it (a noncharacter: never in real text).
_BAD_MARK = "\ufdd0"
_bad = threading.local()  # the bytes replaced so far, per thread (the web app ingests in threads)


def _bad_bytes() -> list[bytes]:
    if not hasattr(_bad, "found"):
        _bad.found = []
    found: list[bytes] = _bad.found
    return found


def _mark_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _bad_bytes().append(exc.object[exc.start : exc.end])
    return _BAD_MARK, exc.end


codecs.register_error("tierwise-mark", _mark_bad_bytes)


def detect_encoding(sample: bytes, path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 (BOM, or NUL pattern), GB18030 (a superset of GBK and GB2312)."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if len(sample) >= 4:
        even_nul = sample[0::2].count(0)
        odd_nul = sample[1::2].count(0)
        half = len(sample) // 2
        if odd_nul > 0.4 * half and even_nul < 0.05 * half:
            return "utf-16-le"
        if even_nul > 0.4 * half and odd_nul < 0.05 * half:
            return "utf-16-be"
    if b"\x00" in sample:
        raise UserError(
            "this is a binary file, not CSV/TSV text, Excel or Parquet; export the data as CSV or XLSX",
            file=str(path),
        )
    # The sample may end inside a character: decoding it incrementally leaves that one for later. (Cutting at
    # the last LF instead missed every non-ASCII byte after it in a file whose lines end with CR.)
    for enc in ("utf-8", "gb18030"):
        try:
            codecs.getincrementaldecoder(enc)().decode(sample, final=False)
            return enc
        except UnicodeDecodeError:
            pass
    trimmed = _trim_partial_char(sample)

    best = from_bytes(trimmed).best()
    if best is None:
        raise UserError(
            "cannot tell the text encoding; pass --encoding (e.g. gbk, utf-8, utf-16, latin-1)", file=str(path)
        )
    return str(best.encoding)


def _trim_partial_char(sample: bytes) -> bytes:
    """Cut the sample at its last line break so a multi-byte character is never split in two."""
    cut = max(sample.rfind(b"\n"), sample.rfind(b"\r"))
    return sample[: cut + 1] if cut > 0 else sample


def _ascii_compatible(enc: str) -> bool:
    """Line breaks, quotes and separators are single ASCII bytes that no multi-byte character contains
    (UTF-8, GBK/GB18030, Big5, Shift-JIS, Latin-1 …), so lines can be counted in the raw bytes."""
    try:
        return b'\r\n,;|\t"'.decode(enc) == '\r\n,;|\t"' and "\n".encode(enc)[-1:] == b"\n"
    except (UnicodeError, LookupError):
        return False


def _sniff_separator(lines: list[str]) -> str:
    rows = [ln for ln in lines if ln.strip()][:50]
    if not rows:
        return ","
    best, best_fields = ",", 1
    for cand in _CANDIDATES:
        counts = [len(r) for r in csv.reader(rows, delimiter=cand)]
        # The separator must split the header and nearly every row the same way.
        consistent = sum(c == counts[0] for c in counts) >= 0.9 * len(counts)
        if consistent and counts[0] > best_fields:
            best, best_fields = cand, counts[0]
    if best_fields == 1:
        ws = [len(r.split()) for r in rows]
        if ws[0] > 1 and sum(c == ws[0] for c in ws) >= 0.9 * len(ws):
            return "whitespace"
    return best


@dataclass
class _TextFile:
    """What the text reader found out about a file; the error scans read it again with the same settings."""

    path: Path
    encoding: str
    encoding_given: bool
    delimiter: str  # a character, or "whitespace"
    names: list[str]
    first_line: int  # file line of the first record after the header


def _open_text(
    path: Path, size: int, sep: str | None, encoding: str | None, header: bool, progress: ProgressFn | None
) -> Source:
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    enc = encoding or detect_encoding(sample, path)
    try:
        codecs.lookup(enc)
    except LookupError as exc:
        raise UserError(f"unknown encoding '{enc}'; use e.g. utf-8, gbk, gb18030, utf-16", file=str(path)) from exc
    # An incremental decoder keeps a character cut at the end of the sample for later instead of failing on it.
    _bad_bytes().clear()
    text = codecs.getincrementaldecoder(enc)("tierwise-mark").decode(sample, final=len(sample) < SAMPLE_BYTES)
    bad_in_sample = bool(_bad_bytes())
    text = text.lstrip("\ufeff")
    lines = _BREAK.split(text)
    if len(sample) == SAMPLE_BYTES and len(lines) > 1:
        lines.pop()  # cut off by the sample's end
    if not any(ln.strip() for ln in lines):
        raise UserError("the file has no rows (only blank lines); export it again with its rows", file=str(path))
    if sep is not None and sep not in SEPARATORS:
        raise UserError(f"--sep '{sep}' is not supported; use one of: , ; \\t | whitespace", file=str(path))
    delimiter = SEPARATORS[sep] if sep else _sniff_separator(lines)
    # Blank lines at the top are skipped as lines (pyarrow's skip_rows counts lines, not records).
    leading_blank = 0
    for ln in lines:
        if ln.strip():
            break
        leading_blank += 1
    if delimiter == "whitespace":
        first_fields, header_lines = lines[leading_blank].split(), 1
    else:
        # The header is a record: a quoted column name may hold a line break.
        rdr = csv.reader(iter(lines[leading_blank:]), delimiter=delimiter)
        first_fields, header_lines = next(rdr), max(rdr.line_num, 1)
    if header:
        names = dedupe_names([c.strip().lstrip("\ufeff") or f"column_{i + 1}" for i, c in enumerate(first_fields)])
        skip, first_line = leading_blank + header_lines, leading_blank + header_lines + 1
    else:
        names = [f"column_{i + 1}" for i in range(len(first_fields))]
        skip, first_line = leading_blank, leading_blank + 1
    info = _TextFile(path, enc, encoding is not None, delimiter, names, first_line)
    if bad_in_sample:
        raise _encoding_error(info)

    cleanup: list[Path] = []
    read_path, read_enc, pa_delim = path, enc, delimiter
    if delimiter == "whitespace":
        try:
            read_path = _whitespace_to_tabs(path, enc)
        except UnicodeDecodeError as exc:
            raise _encoding_error(info) from exc
        cleanup.append(read_path)
        read_enc, pa_delim = "utf-8", "\t"
    read_opts = pacsv.ReadOptions(
        encoding=_pyarrow_encoding(read_enc), block_size=16 << 20, column_names=names, skip_rows=skip
    )
    # Quoted values may hold line breaks (they are counted into `_line` below). Blank lines come back as rows
    # without values so that they can be counted too; they are dropped before anything sees them.
    parse_opts = pacsv.ParseOptions(delimiter=pa_delim, newlines_in_values=True, ignore_empty_lines=False)
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )

    def fail(exc: Exception, line: int | None = None) -> UserError:
        if isinstance(exc, UnicodeDecodeError) or "invalid UTF8" in str(exc):
            return _encoding_error(info)
        return _csv_error(info, read_path, read_enc, exc, base_line=line)

    stream = pa.input_stream(str(read_path))
    try:
        reader = pacsv.open_csv(stream, read_options=read_opts, parse_options=parse_opts, convert_options=convert)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        stream.close()
        for p in cleanup:
            p.unlink(missing_ok=True)
        raise fail(exc) from exc
    except StopIteration as exc:
        stream.close()
        for p in cleanup:
            p.unlink(missing_ok=True)
        raise _header_only(path) from exc

    def batches() -> Iterator[pa.RecordBatch]:
        line = first_line
        finder: _LineFinder | None = None
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                    raise fail(exc, line) from exc
                starts, line = _record_lines(batch, line)
                empty = _rows_without_values(batch)
                if len(empty):
                    # A blank line and a line of bare separators both arrive as a row of empty values; only the
                    # file can tell them apart, and only blank lines are skipped (as pyarrow would by default).
                    finder = finder or _LineFinder(read_path, read_enc)
                    blank = [i for i in empty.tolist() if finder.is_blank(int(starts[i]))]
                    if blank:
                        keep = np.ones(batch.num_rows, dtype=bool)
                        keep[blank] = False
                        batch, starts = batch.filter(pa.array(keep)), starts[keep]
                if progress is not None:
                    progress(min(stream.tell(), size))
                if batch.num_rows:
                    yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(starts)], names=[*names, LINE])
        finally:
            stream.close()
            if finder is not None:
                finder.close()

    label = "whitespace" if delimiter == "whitespace" else delimiter
    return Source(path, "csv", names, batches(), size, enc, label, "", cleanup)


def _pyarrow_encoding(enc: str) -> str:
    # pyarrow decodes non-UTF-8 through Python codecs; its own fast path wants the name 'utf8'.
    return "utf8" if codecs.lookup(enc).name == "utf-8" else enc


def _header_only(path: Path) -> UserError:
    return UserError("the file has a header but no data rows; export it again with its rows", file=str(path))


def _offsets(col: pa.Array) -> np.ndarray:
    return np.frombuffer(col.buffers()[1], dtype=np.int32, count=len(col) + 1, offset=col.offset * 4)


def _record_lines(batch: pa.RecordBatch, line: int) -> tuple[np.ndarray, int]:
    """The file line each record starts on, and the line after the batch.

    A record takes one line plus one per line break inside its quoted values. Most files have none: one
    vectorised look at each column's bytes finds that out (about 1% of reading); only then are the breaks
    counted per row.
    """
    n = batch.num_rows
    extra: np.ndarray | None = None
    for col in batch.columns:
        offsets = _offsets(col)
        data = np.frombuffer(col.buffers()[2] or b"", dtype=np.uint8)[offsets[0] : offsets[-1]]
        lf = np.flatnonzero(data == 10)
        cr = np.flatnonzero(data == 13)
        if not len(lf) and not len(cr):
            continue
        pos_rows = np.searchsorted(offsets, np.concatenate([lf, cr]) + offsets[0], side="right") - 1
        rows_lf, rows_cr = pos_rows[: len(lf)], pos_rows[len(lf) :]
        if len(cr):
            # CR LF inside one value is one break; a CR ending a value and an LF starting the next are two.
            nxt = np.minimum(cr + 1, len(data) - 1)
            pair = (cr + 1 < len(data)) & (data[nxt] == 10)
            pair &= np.searchsorted(offsets, nxt + offsets[0], side="right") - 1 == rows_cr
            rows_cr = rows_cr[~pair]
        counts = np.bincount(np.concatenate([rows_lf, rows_cr]), minlength=n)
        extra = counts if extra is None else extra + counts
    if extra is None:
        return np.arange(line, line + n, dtype=np.int64), line + n
    before = np.concatenate([[0], np.cumsum(extra[:-1])])
    return line + np.arange(n, dtype=np.int64) + before, line + n + int(extra.sum())


def _rows_without_values(batch: pa.RecordBatch) -> np.ndarray:
    """Rows whose every value is empty (blank lines, or lines of separators only)."""
    cand: np.ndarray | None = None
    for col in batch.columns:
        lengths = np.diff(_offsets(col))
        cand = np.flatnonzero(lengths == 0) if cand is None else cand[lengths[cand] == 0]
        if not len(cand):
            break
    return cand if cand is not None else np.empty(0, dtype=np.int64)


class _LineFinder:
    """Tells whether given lines of a file (asked in increasing order) are blank, reading it forward once.

    Used only when a file has rows without values, to tell a blank line (skipped) from a line of separators
    (a row like any other); whole chunks before the asked line are skipped by counting their line breaks.
    """

    CHUNK = 16 << 20

    def __init__(self, path: Path, enc: str) -> None:
        self._fh: IO[Any]
        self._cr: Any  # bytes or str, as the file is read
        self._lf: Any
        self._re: re.Pattern[Any]
        if _ascii_compatible(enc):
            self._fh = path.open("rb")
            self._cr, self._lf, self._re = b"\r", b"\n", _BREAK_BYTES
        else:
            self._fh = path.open(encoding=enc, newline="", errors="replace")
            self._cr, self._lf, self._re = "\r", "\n", _BREAK
        self._first = 1  # the line the chunk starts on
        self._next_chunk()

    def _next_chunk(self) -> None:
        chunk = self._fh.read(self.CHUNK)
        while chunk[-1:] == self._cr:  # never split a CR LF between two chunks
            more = self._fh.read(1)
            if not more:
                break
            chunk += more
        self._buf = chunk
        self._ends: list[int] | None = None
        breaks = chunk.count(self._lf)
        if self._cr in chunk:
            breaks += chunk.count(self._cr) - chunk.count(self._cr + self._lf)
        self._breaks = breaks

    def is_blank(self, line: int) -> bool:
        while self._buf:
            i = line - self._first
            if i <= self._breaks:
                if self._ends is None:
                    self._ends = [m.end() for m in self._re.finditer(self._buf)]
                start = self._ends[i - 1] if i else 0
                if start < len(self._buf):
                    return self._buf[start : start + 1] in (self._cr, self._lf)
            self._first += self._breaks
            self._next_chunk()
        return False

    def close(self) -> None:
        self._fh.close()


def _records(f: _TextFile, path: Path, enc: str, errors: str = "strict") -> Iterator[tuple[int, list[str]]]:
    """(file line the record starts on, its fields) for every record, read again with Python's csv module."""
    with path.open(encoding=enc, errors=errors, newline="") as fh:
        if f.delimiter == "whitespace" and path == f.path:
            for number, text in enumerate(fh, start=1):
                yield number, text.lstrip("\ufeff").split()
            return
        rdr = csv.reader(fh, delimiter="\t" if f.delimiter == "whitespace" else f.delimiter)
        end = 0
        for row in rdr:
            if end == 0 and row:
                row[0] = row[0].lstrip("\ufeff")
            yield end + 1, row
            end = rdr.line_num


def _csv_error(f: _TextFile, path: Path, enc: str, exc: Exception, base_line: int | None = None) -> UserError:
    msg = str(exc)
    if "Could not skip initial" in msg:
        # Only a header, without a line break after it: pyarrow then blames the block size.
        return _header_only(f.path)
    m = re.search(r"Expected (\d+) columns, got (\d+): ?(.*)", msg)
    if m:
        return UserError(
            f"expected {m.group(1)} columns but found {m.group(2)}; fix that line (a stray separator or quote) "
            "or choose the separator with --sep",
            file=str(f.path),
            line=_scan_for_ragged(f, path, enc, int(m.group(1))),
        )
    return UserError(
        f"cannot read as delimited text ({msg.splitlines()[0]}); check --sep and --encoding",
        file=str(f.path),
        line=base_line,
    )


def _scan_for_ragged(f: _TextFile, path: Path, enc: str, expected: int) -> int | None:
    """pyarrow names no line for a ragged row; find it so the user can open the file right there."""
    try:
        for number, row in _records(f, path, enc, errors="replace"):
            if number >= f.first_line and row and len(row) != expected:
                return number
    except csv.Error:  # a value beyond the csv module's field size limit: no line then
        pass
    return None


def _encoding_error(f: _TextFile) -> UserError:
    """Where the first byte that the encoding cannot read is: file line, column, the byte itself."""
    _bad_bytes().clear()
    line: int | None = None
    column: str | None = None
    try:
        for start, row in _records(f, f.path, f.encoding, errors="tierwise-mark"):
            hit = next(((j, v) for j, v in enumerate(row) if _BAD_MARK in v), None)
            if hit is None:
                continue
            j, value = hit
            before = "".join(row[:j]) + value[: value.index(_BAD_MARK)]
            line = start + len(_BREAK.findall(before))
            if start >= f.first_line and j < len(f.names):
                column = f.names[j]
            break
    except csv.Error:
        pass
    bad = next(iter(_bad_bytes()), b"")
    what = f"byte {' '.join(f'0x{b:02X}' for b in bad[:4])}" if bad else "a byte"
    found = "given with --encoding" if f.encoding_given else "found in the first MiB of the file"
    others = "utf-8, latin-1" if codecs.lookup(f.encoding).name.startswith("gb") else "gbk, latin-1"
    return UserError(
        f"{what} cannot be read as {f.encoding} (the encoding {found}); pass the file's real encoding with "
        f"--encoding (e.g. {others}), or save the file again as UTF-8",
        file=str(f.path),
        line=line,
        column=column,
    )


def _whitespace_to_tabs(path: Path, enc: str) -> Path:
    """Whitespace-separated text (CDNOW): fold runs of blanks into one tab, streaming, into a temp file."""
    tmp = tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8", newline="\n")  # noqa: SIM115
    splitter = re.compile(r"[ \t]+")
    try:
        with path.open(encoding=enc, newline="") as src, tmp:
            while True:
                chunk = src.readlines(8 << 20)
                if not chunk:
                    break
                tmp.write("".join(splitter.sub("\t", ln.strip(" \t\r\n\ufeff")) + "\n" for ln in chunk))
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise
    return Path(tmp.name)


# ---------------------------------------------------------------- parquet


def _open_parquet(path: Path, size: int, progress: ProgressFn | None) -> Source:
    try:
        pf = pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise UserError(f"cannot read as Parquet ({exc}); export the file again", file=str(path)) from exc
    columns = list(pf.schema_arrow.names)
    total_rows = pf.metadata.num_rows

    def batches() -> Iterator[pa.RecordBatch]:
        row = 1
        for batch in pf.iter_batches(batch_size=BATCH_ROWS):
            n = batch.num_rows
            cols = [plain_column(c) for c in batch.columns]
            yield pa.RecordBatch.from_arrays(
                [*cols, pa.array(range(row, row + n), type=pa.int64())], names=[*columns, LINE]
            )
            row += n
            if progress is not None:
                progress(int(size * min(1.0, (row - 1) / max(total_rows, 1))))

    return Source(path, "parquet", columns, batches(), size)


def plain_column(col: pa.Array) -> pa.Array:
    """Dictionary and large string columns become plain strings so the engine sees one type per field."""
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type):
        col = col.cast(pa.string())
    return col
