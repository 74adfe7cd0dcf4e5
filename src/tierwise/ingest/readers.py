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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tierwise.errors import UserError

LINE = "_line"
SHEET = "_sheet"  # the sheet of each row, when a workbook has several (never a source column)
SEPARATORS = {",": ",", ";": ";", "\\t": "\t", "\t": "\t", "tab": "\t", "|": "|", "whitespace": "whitespace"}
_CANDIDATES = [",", ";", "\t", "|"]
SAMPLE_BYTES = 1 << 20
BATCH_ROWS = 1 << 20

ProgressFn = Callable[[int], None]  # bytes or rows consumed so far


@dataclass(frozen=True)
class ReadLimits:
    """Bounds checked before a spreadsheet is parsed ([ingest] max_sheet_rows, max_expansion_ratio)."""

    max_sheet_rows: int = 1_048_576
    max_expansion_ratio: float = 100.0


# How many cells of a row name a known field of the target table (finds the header row of a spreadsheet).
HeaderScore = Callable[[list[str]], int]


@dataclass
class Source:
    path: Path
    file_format: str  # csv | excel | parquet
    columns: list[str]
    batches: Iterator[pa.RecordBatch]
    size: int  # bytes (text/parquet) used for progress
    encoding: str = ""
    delimiter: str = ""
    sheet: str = ""
    cleanup: list[Path] = field(default_factory=list)
    name: str = ""  # what reports show, when not the path (a database table: its URL without the password)
    schema: pa.Schema | None = None  # the batches' types when they are not all text (with `_line`)
    warnings: list[str] = field(default_factory=list)  # said to the user and stored with the batch

    @property
    def label(self) -> str:
        return self.name or str(self.path)

    def close(self) -> None:
        for p in self.cleanup:
            p.unlink(missing_ok=True)


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
        from tierwise.ingest.excel import open_excel

        return open_excel(path, size, sheet, header, header_row, header_score, limits)
    return _open_text(path, size, sep, encoding, header, progress)


# ---------------------------------------------------------------- text


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
    trimmed = _trim_partial_char(sample)
    try:
        trimmed.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        trimmed.decode("gb18030")
        return "gb18030"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(trimmed).best()
    if best is None:
        raise UserError(
            "cannot tell the text encoding; pass --encoding (e.g. gbk, utf-8, utf-16, latin-1)", file=str(path)
        )
    return str(best.encoding)


def _trim_partial_char(sample: bytes) -> bytes:
    """Cut the sample at its last newline so a multi-byte character is never split in two."""
    cut = sample.rfind(b"\n")
    return sample[: cut + 1] if cut > 0 else sample


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
    try:
        text = _trim_partial_char(sample).decode(enc) if len(sample) == SAMPLE_BYTES else sample.decode(enc)
    except UnicodeDecodeError as exc:
        raise UserError(
            f"the file is not valid {enc} (byte {exc.start}); pass the right --encoding", file=str(path)
        ) from exc
    text = text.lstrip("\ufeff")
    lines = text.splitlines()
    if not any(ln.strip() for ln in lines):
        raise UserError("the file has no rows (only blank lines); export it again with its rows", file=str(path))
    if sep is not None and sep not in SEPARATORS:
        raise UserError(f"--sep '{sep}' is not supported; use one of: , ; \\t | whitespace", file=str(path))
    delimiter = SEPARATORS[sep] if sep else _sniff_separator(lines)
    cleanup: list[Path] = []
    read_path, read_enc, pa_delim = path, enc, delimiter
    if delimiter == "whitespace":
        read_path = _whitespace_to_tabs(path, enc)
        cleanup.append(read_path)
        read_enc, pa_delim = "utf-8", "\t"
    # Blank lines at the top shift what pyarrow calls the first row; count them to keep line numbers true.
    leading_blank = 0
    for ln in lines:
        if ln.strip():
            break
        leading_blank += 1
    read_opts = pacsv.ReadOptions(
        encoding=_pyarrow_encoding(read_enc),
        block_size=16 << 20,
        autogenerate_column_names=not header,
        skip_rows=leading_blank,
    )
    parse_opts = pacsv.ParseOptions(delimiter=pa_delim, newlines_in_values=False)
    first_fields = next(csv.reader([lines[leading_blank]], delimiter=pa_delim if delimiter != "whitespace" else "\t"))
    if delimiter == "whitespace":
        first_fields = lines[leading_blank].split()
    ncols = len(first_fields)
    if header:
        names = [c.strip().lstrip("\ufeff") or f"column_{i + 1}" for i, c in enumerate(first_fields)]
        names = _dedupe_names(names)
        read_opts.column_names = names
        read_opts.autogenerate_column_names = False
        read_opts.skip_rows = leading_blank + 1
    else:
        names = [f"column_{i + 1}" for i in range(ncols)]
        read_opts.column_names = names
        read_opts.autogenerate_column_names = False
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()),
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    first_line = leading_blank + (2 if header else 1)
    stream = pa.input_stream(str(read_path))
    try:
        reader = pacsv.open_csv(stream, read_options=read_opts, parse_options=parse_opts, convert_options=convert)
    except pa.ArrowInvalid as exc:
        stream.close()
        raise _csv_error(path, exc) from exc
    except StopIteration as exc:
        stream.close()
        raise UserError("the file has a header but no data rows", file=str(path)) from exc

    def batches() -> Iterator[pa.RecordBatch]:
        line = first_line
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    raise _csv_error(path, exc, base_line=line) from exc
                n = batch.num_rows
                lines_col = pa.array(range(line, line + n), type=pa.int64())
                line += n
                if progress is not None:
                    progress(min(stream.tell(), size))
                yield pa.RecordBatch.from_arrays([*batch.columns, lines_col], names=[*names, LINE])
        finally:
            stream.close()

    label = "whitespace" if delimiter == "whitespace" else delimiter
    return Source(path, "csv", names, batches(), size, enc, label, "", cleanup)


def _pyarrow_encoding(enc: str) -> str:
    # pyarrow decodes non-UTF-8 through Python codecs; its own fast path wants the name 'utf8'.
    return "utf8" if codecs.lookup(enc).name == "utf-8" else enc


def _csv_error(path: Path, exc: pa.ArrowInvalid, base_line: int | None = None) -> UserError:
    msg = str(exc)
    m = re.search(r"Expected (\d+) columns, got (\d+): ?(.*)", msg)
    if m:
        line = _scan_for_ragged(path, int(m.group(1)))
        return UserError(
            f"expected {m.group(1)} columns but found {m.group(2)}; fix that line (a stray separator or quote) "
            "or choose the separator with --sep",
            file=str(path),
            line=line,
        )
    return UserError(
        f"cannot read as delimited text ({msg.splitlines()[0]}); check --sep and --encoding",
        file=str(path),
        line=base_line,
    )


def _scan_for_ragged(path: Path, expected: int) -> int | None:
    """pyarrow names no line for a ragged row; find it so the user can open the file right there."""
    with path.open("rb") as fh:
        sample = fh.read(SAMPLE_BYTES)
    enc = detect_encoding(sample, path)
    with path.open(encoding=enc, newline="") as fh:
        lines = (ln.lstrip("\ufeff") for ln in fh)
        first = next(lines, "")
        delim = _sniff_separator([first])
        for number, row in enumerate(csv.reader(lines, delimiter=delim), start=2):
            if row and len(row) != expected:
                return number
    return None


def _whitespace_to_tabs(path: Path, enc: str) -> Path:
    """Whitespace-separated text (CDNOW): fold runs of blanks into one tab, streaming, into a temp file."""
    tmp = tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8", newline="\n")  # noqa: SIM115
    splitter = re.compile(r"[ \t]+")
    with path.open(encoding=enc, newline="") as src, tmp:
        while True:
            chunk = src.readlines(8 << 20)
            if not chunk:
                break
            tmp.write("".join(splitter.sub("\t", ln.strip(" \t\r\n\ufeff")) + "\n" for ln in chunk))
    return Path(tmp.name)


def _dedupe_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 1
            out.append(n)
    return out


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
