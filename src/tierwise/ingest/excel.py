"""Spreadsheets (XLSX, XLSM, XLSB, XLS, ODS) → a Source, as reports are really laid out.

- The file is checked before it is parsed: a zip-based workbook whose parts expand far beyond their compressed
  size, or whose sheets hold more rows than `[ingest] max_sheet_rows`, is refused with one line. calamine
  builds a whole sheet in memory, so a 2 MB file that unpacks to six million rows would otherwise take gigabytes
  or abort the process natively before any Python error could be raised.
- The header is found among the first rows (titles, notes and blank rows above it), and a second header row
  below it (units, or field names under a group label) is merged into `parent / child` names.
- Several sheets can make one batch: columns are aligned by name and each row carries its sheet in `_sheet`.
- Values arrive as text, like CSV (parsed later, in the engine); whole numbers keep every digit Excel stored.
"""

from __future__ import annotations

import datetime as _dt
import html
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain, islice
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
from python_calamine import CalamineWorkbook

from tierwise.errors import UserError
from tierwise.ingest.source import LINE, SHEET, HeaderScore, ReadLimits, Source, dedupe_names

SCAN_ROWS = 30  # the header is looked for among this many rows at the top of a sheet
MIN_SCORE = 2  # a row naming at least this many known fields is a header
CHUNK_ROWS = 50_000  # rows converted to Arrow at a time (bounded Python memory for large sheets)
RATIO_FLOOR = 8 << 20  # parts that expand to less than this cannot hurt, whatever their ratio
_READ_CHUNK = 4 << 20
_ROOT_WITHIN = 1 << 16  # the root element (and its namespace prefix) lies within this many bytes of the start
_TAG_TAIL = 256  # longer than any row tag counted below, so a tag cut between two chunks is counted once

_NUMBERISH = re.compile(r"^[-+(]?[¥$€£]?[\d,，.]*\d[\d,，.]*%?\)?$")
_DATEISH = re.compile(r"^\d{1,4}\s*[-/.年]\s*\d{1,2}")
_EXACT_DIGITS = 1e15  # beyond this, a double no longer holds every whole number (Excel keeps 15 digits)


# ---------------------------------------------------------------- bounds, before parsing


def check_workbook(path: Path, limits: ReadLimits) -> None:
    """Refuse a zip-based workbook whose parts expand too far or whose sheets have too many rows.

    Reads only the zip directory and streams the sheet parts (a few MiB at a time, stopping as soon as a limit
    is passed), so a decompression bomb costs seconds and little memory. XLS (not compressed; at most 65,536
    rows by format) needs no check.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return  # not a zip (XLS, or damaged): calamine says what it is
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        sheet_names = _sheet_names_by_part(zf)
        for info in infos:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_FLOOR and ratio > limits.max_expansion_ratio:
                raise UserError(
                    f"{_part_label(info.filename, sheet_names)} expands from {_size(info.compress_size)} to "
                    f"{_size(info.file_size)} ({ratio:,.0f} times), more than [ingest] max_expansion_ratio = "
                    f"{limits.max_expansion_ratio:g} allows (sheets written by spreadsheet programs expand up to about "
                    "15 times) — export it again (or as CSV), or raise max_expansion_ratio in tierwise.toml if you "
                    "trust the file",
                    file=str(path),
                )
        for info in infos:
            # XLSB rows are binary records: bounded by the expansion ratio only.
            if re.fullmatch(r"xl/worksheets/[^/]+\.xml", info.filename) or info.filename == "content.xml":
                ods = info.filename == "content.xml"
                _count_rows(zf, info, ods, limits, path, _part_label(info.filename, sheet_names))


def _count_rows(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, ods: bool, limits: ReadLimits, path: Path, label: str
) -> None:
    # bytes.count runs at memory speed, without copies (start/end bounds); a regex trying every "<" of a
    # million-row sheet took seconds.
    rows = 0
    tail = b""
    tag: tuple[bytes, list[bytes]] | None = None
    try:
        with zf.open(info) as fh:
            while True:
                chunk = fh.read(_READ_CHUNK)
                buf = tail + chunk
                if tag is None:
                    tag = _row_tag(buf, ods, final=not chunk)
                    if tag is None:  # the root element is not complete yet
                        tail = buf
                        continue
                row, not_rows = tag
                # Count the tags starting before the cut; a tag cut in two is counted whole with the next chunk.
                cut = len(buf) if not chunk else max(len(buf) - _TAG_TAIL, 0)
                rows += buf.count(row, 0, cut + len(row) - 1)
                rows -= sum(buf.count(other, 0, cut + len(other) - 1) for other in not_rows)
                tail = buf[cut:]
                if not chunk or rows > limits.max_sheet_rows:
                    break
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise UserError(f"the workbook is damaged ({exc}); save it again as XLSX or CSV", file=str(path)) from exc
    if rows > limits.max_sheet_rows:
        raise UserError(
            f"{label} has more than {limits.max_sheet_rows:,} rows (counted {rows:,} before stopping), more than "
            "[ingest] max_sheet_rows allows; split the sheet into smaller files, export it as CSV (read in "
            "bounded memory at any size), or raise max_sheet_rows in tierwise.toml",
            file=str(path),
        )


def _row_tag(start: bytes, ods: bool, *, final: bool) -> tuple[bytes, list[bytes]] | None:
    """How a row's tag starts, and the other elements whose tags start the same way: `<row` but not
    `<rowBreaks` (with the namespace prefix the sheet uses, if any: `<x:row`); `<table:table-row` but not
    `<table:table-rows` or `<table:table-row-group`."""
    if ods:
        row = b"<table:table-row"
        return row, [row + b"s", row + b"-group"]
    m = re.search(rb"<([A-Za-z_][\w.-]*:)?worksheet[\s>]", start[:_ROOT_WITHIN])
    if m is None and not final and len(start) < _ROOT_WITHIN:
        return None
    row = b"<" + ((m.group(1) or b"") if m else b"") + b"row"
    return row, [row + b"Breaks"]


def _sheet_names_by_part(zf: zipfile.ZipFile) -> dict[str, str]:
    """xl/worksheets/sheet1.xml → the sheet's name, for messages (best effort: the part name otherwise)."""
    try:
        book = _small_part(zf, "xl/workbook.xml")
        rels = _small_part(zf, "xl/_rels/workbook.xml.rels")
    except Exception:  # missing or damaged: the checks name the part instead, and calamine reports the damage
        return {}
    targets = {}
    for tag in re.findall(r"<(?:\w+:)?Relationship\b[^>]*>", rels):
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', tag))
        if "Id" in attrs and "Target" in attrs:
            target = attrs["Target"]
            full = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
            targets[attrs["Id"]] = full
    out = {}
    for tag in re.findall(r"<(?:\w+:)?sheet\b[^>]*>", book):
        attrs = dict(re.findall(r'([\w:]+)="([^"]*)"', tag))
        rid = next((v for k, v in attrs.items() if k.endswith(":id")), None)
        if rid in targets and "name" in attrs:
            out[targets[rid]] = html.unescape(attrs["name"])
    return out


def _small_part(zf: zipfile.ZipFile, name: str) -> str:
    info = zf.getinfo(name)
    if info.file_size > RATIO_FLOOR:
        return ""
    return zf.read(info).decode("utf-8", "replace")


def _part_label(part: str, names: dict[str, str]) -> str:
    if part in names:
        return f"sheet '{names[part]}'"
    if part == "content.xml":
        return "the spreadsheet"
    return f"part {part} of the workbook"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------- cell values


def cell_text(value: object) -> str:
    """One cell as text. A whole number keeps all its digits: the shortest decimal that reads back as the same
    double, written out (for a number typed in Excel, its own 15-digit display padded with zeros), never
    `1.2345e+19`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer():
            if abs(value) < _EXACT_DIGITS:
                return str(int(value))
            return str(int(Decimal(repr(value))))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, _dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return str(value.total_seconds())
    return str(value)


def _column_texts(values: list[object]) -> tuple[list[str], int | None]:
    """cell_text over a column, with the common cases inlined (a million-row sheet has millions of cells),
    and the index of the first whole number beyond 15 digits."""
    out: list[str] = []
    append = out.append
    big = None
    for i, v in enumerate(values):
        if isinstance(v, str):
            append(v)
        elif isinstance(v, float) and v.is_integer():
            if -_EXACT_DIGITS < v < _EXACT_DIGITS:
                append(str(int(v)))
                continue
            if big is None:
                big = i
            append(cell_text(v))
        else:
            append(cell_text(v))
    return out, big


def _blank(row: Sequence[object]) -> bool:
    return all(v is None or (isinstance(v, str) and not v.strip()) for v in row)


def _data_like(value: object) -> bool:
    if value is None:
        return False
    if not isinstance(value, str):
        return True  # numbers, dates, booleans are values, never labels
    text = value.strip()
    return bool(text) and bool(_NUMBERISH.match(text) or _DATEISH.match(text))


# ---------------------------------------------------------------- layout of one sheet


Merge = tuple[int, int, int, int]  # first row, first column, last row, last column (0-based, in the read range)


@dataclass
class Layout:
    name: str
    columns: list[str]
    data_start: int  # index of the first data row in the sheet's rows (0 = sheet row 1)
    header_line: int  # sheet row of the header (1-based), 0 without one
    score: int
    rows: list[list[Any]]  # the rows read to find the header
    rest: Iterator[list[Any]] | None = None  # the sheet's remaining rows, when kept open


def _merges(sheet: Any, col0: int) -> list[Merge]:
    try:
        ranges = sheet.merged_cell_ranges or []
    except Exception:  # formats without merge information
        return []
    return [(r0, c0 - col0, r1, c1 - col0) for (r0, c0), (r1, c1) in ranges]


def _merge_at(merges: list[Merge], row: int, col: int) -> Merge | None:
    for m in merges:
        if m[0] <= row <= m[2] and m[1] <= col <= m[3]:
            return m
    return None


def _texts(row: Sequence[object], width: int) -> list[str]:
    return [cell_text(v).strip() for v in row] + [""] * (width - len(row))


def _owners(header: list[str], row: int, merges: list[Merge], *, extend_empty: bool) -> list[int | None]:
    """For each column, the column whose header cell labels it: itself, the start of a merged range covering
    it, or (with `extend_empty`) the nearest filled cell to its left across empty cells."""
    owners: list[int | None] = [None] * len(header)
    j = 0
    while j < len(header):
        m = _merge_at(merges, row, j)
        if not header[j]:
            if m is not None and m[1] < j and header[m[1]]:
                owners[j] = m[1]
            j += 1
            continue
        end = m[3] if m is not None and m[3] > j else j
        while (
            extend_empty and end + 1 < len(header) and not header[end + 1] and _merge_at(merges, row, end + 1) is None
        ):
            end += 1
        end = min(end, len(header) - 1)
        for k in range(j, end + 1):
            owners[k] = j
        j = end + 1
    return owners


def _labels(header: list[str], owners: list[int | None]) -> list[str]:
    return [header[o] if o is not None else "" for o in owners]


def _filled(cells: Sequence[object]) -> list[int]:
    return [j for j, v in enumerate(cells) if not (v is None or (isinstance(v, str) and not v.strip()))]


def _child_row(header: list[str], below: Sequence[object], row: int, merges: list[Merge]) -> bool:
    """Is the row under the header a second header row ("含税 | 不含税" under a "金额" spanning two columns,
    or "客户编号 | 客户名称" under "客户信息")? Text only, nothing data-like, and only under header cells that
    span more than their own column (merged, or followed by empty header cells) or under empty ones."""
    filled = [j for j in _filled(below) if j < len(header)]
    if not filled or any(_data_like(below[j]) for j in filled):
        return False
    owners = _owners(header, row, merges, extend_empty=True)
    for j in filled:
        owner = owners[j]
        if owner is not None and owners.count(owner) < 2:
            return False  # a value under a single-column header: a data row
    return True


def _parent_row(above: list[str], header: list[str], row: int, merges: list[Merge]) -> bool:
    """A row of group labels above the header ("客户信息" over "客户编号 | 客户名称"): text only, each label a
    merged range — across two columns or more but narrower than the header (a title merged across the whole
    header is no group), or down over an empty header cell."""
    filled = _filled(above)
    if not filled or any(_data_like(above[j]) for j in filled):
        return False
    header_width = len(_filled(header))
    groups = 0
    for j in filled:
        m = _merge_at(merges, row, j)
        if m is None or m[0] != row or m[1] != j:
            return False
        if m[3] > m[1]:
            if m[3] - m[1] + 1 >= header_width:
                return False
            groups += 1
        elif m[2] <= row or (j < len(header) and header[j]):
            return False
    return groups > 0


def _join(parent: str, child: str) -> str:
    if parent and child and parent != child:
        return f"{parent} / {child}"
    return parent or child


def find_layout(
    name: str,
    rows: list[list[Any]],
    merges: list[Merge],
    *,
    header: bool,
    header_row: int | None,
    header_score: HeaderScore | None,
    file: str,
) -> Layout | None:
    """Where the header is and what the columns are called; None for an empty sheet."""
    width = max((len(r) for r in rows), default=0)
    filled = [i for i, r in enumerate(rows) if not _blank(r)]
    if not filled and header_row is None:
        return None
    if not header:
        return Layout(name, [f"column_{j + 1}" for j in range(width)], filled[0], 0, 0, rows) if filled else None
    score = 0
    if header_row is not None:
        h = header_row - 1
        if h >= len(rows) or _blank(rows[h]):
            raise UserError(
                f"row {header_row} of sheet '{name}' is empty, so it cannot be the header; pass the row with "
                "the column names to --header-row, or leave the option out to find the header automatically",
                file=file,
            )
        if header_score is not None:
            score = header_score(_texts(rows[h], width))
    else:
        h = filled[0]
        if header_score is not None:
            for i in filled[:SCAN_ROWS]:
                s = header_score(_texts(rows[i], width))
                if s > score:
                    h, score = i, s
            if score < MIN_SCORE:
                h = filled[0]
    head = _texts(rows[h], width)
    names = head
    data_start = h + 1
    below = rows[h + 1] if h + 1 < len(rows) else None
    above = _texts(rows[h - 1], width) if h > 0 else []
    if below is not None and _child_row(head, below, h, merges):
        labels = _labels(head, _owners(head, h, merges, extend_empty=True))
        child = _texts(below, width)
        names = [_join(labels[j], child[j]) for j in range(width)]
        data_start = h + 2
    elif above and _parent_row(above, head, h - 1, merges):
        # A cell merged down from the group row names its column on its own ("订单号" over an empty cell).
        labels = _labels(above, _owners(above, h - 1, merges, extend_empty=False))
        names = [_join(labels[j], head[j]) for j in range(width)]
    columns = dedupe_names([n or f"column_{j + 1}" for j, n in enumerate(names)])
    return Layout(name, columns, data_start, h + 1, score, rows)


# ---------------------------------------------------------------- workbook


def open_excel(
    path: Path,
    size: int,
    sheet: str | None,
    header: bool,
    header_row: int | None = None,
    header_score: HeaderScore | None = None,
    limits: ReadLimits | None = None,
) -> Source:
    file = str(path)
    check_workbook(path, limits or ReadLimits())

    try:
        wb = CalamineWorkbook.from_path(file)
    except Exception as exc:  # calamine raises its own error types for corrupt or foreign files
        raise UserError(
            f"cannot open as a spreadsheet ({_first_line(exc)}); save it again as XLSX or CSV", file=file
        ) from exc
    names = list(wb.sheet_names)
    if not names:
        raise UserError("the workbook has no sheets; export it again with its rows", file=file)
    many = len(names) > 1
    chosen = _choose(names, sheet, file)
    auto = sheet is None and many and header_score is not None and header
    if sheet is None and not auto:
        chosen = names[:1]
    scan = max(SCAN_ROWS, header_row or 0) + 2

    layouts: list[Layout] = []
    listing: list[str] = []
    hidden = _hidden(wb)
    for name in chosen:
        if auto and name in hidden:
            listing.append(f"skipped '{name}' (hidden)")  # lookup lists and workings, as a rule
            continue
        sh = _sheet(wb, name, file)
        col0 = sh.start[1] if sh.start is not None else 0
        rows_iter = iter(sh.iter_rows())
        first = list(islice(rows_iter, scan))
        layout = find_layout(
            name,
            first,
            _merges(sh, col0),
            header=header,
            header_row=header_row,
            header_score=header_score,
            file=file,
        )
        if layout is None:
            listing.append(f"skipped '{name}' (empty)")
            continue
        if auto and layout.score < MIN_SCORE:
            listing.append(f"skipped '{name}' (no row of its first {SCAN_ROWS} names {MIN_SCORE} or more known fields)")
            continue
        if len(chosen) == 1:
            layout.rest = rows_iter  # parsed once; several sheets are parsed again one at a time, to bound memory
        listing.append(
            f"loaded '{name}' (header on row {layout.header_line})" if layout.header_line else f"loaded '{name}'"
        )
        layouts.append(layout)
    warnings: list[str] = []
    if not layouts:
        if auto:
            # Nothing recognised: read the first sheet with data as before, so the mapping error names its columns.
            for name in names:
                sh = _sheet(wb, name, file)
                first = list(islice(iter(sh.iter_rows()), scan))
                lay = find_layout(
                    name, first, _merges(sh, _col0(sh)), header=header, header_row=None, header_score=None, file=file
                )
                if lay is not None:
                    layouts.append(lay)
                    listing.append(f"read '{name}' for lack of a recognised header")
                    break
        if not layouts:
            which = f"sheet '{chosen[0]}'" if len(chosen) == 1 and many else "the workbook"
            raise UserError(
                f"{which} has no rows; choose the sheet with the data with --sheet (the sheets are: {_listing(names)})",
                file=file,
            )
    if auto:
        warnings.append(
            f"the workbook has {len(names)} sheets: " + "; ".join(listing) + " — choose others with --sheet NAME, "
            "--sheet NUMBER (1 = first) or --sheet all"
        )
    elif len(layouts) < len(chosen):
        warnings.append("; ".join(x for x in listing if x.startswith("skipped")))

    columns: list[str] = []
    for lay in layouts:
        columns.extend(c for c in lay.columns if c not in columns)
    schema = pa.schema(
        [*((c, pa.string()) for c in columns), (LINE, pa.int64()), *([(SHEET, pa.string())] if many else [])]
    )

    def batches() -> Iterator[pa.RecordBatch]:
        seen_big: set[str] = set()
        for lay in layouts:
            if lay.rest is not None:
                rows: Iterator[Sequence[object]] = chain(lay.rows[lay.data_start :], lay.rest)
            else:
                rows = islice(iter(_sheet(wb, lay.name, file).iter_rows()), lay.data_start, None)
            yield from _sheet_batches(lay, rows, columns, many, warnings, seen_big)
            lay.rows, lay.rest = [], None

    source = Source(path, "excel", columns, batches(), size, "", "", ", ".join(lay.name for lay in layouts))
    source.schema = schema
    source.warnings = warnings
    return source


def _sheet_batches(
    lay: Layout,
    rows: Iterator[Sequence[object]],
    columns: list[str],
    many: bool,
    warnings: list[str],
    seen_big: set[str],
) -> Iterator[pa.RecordBatch]:
    where = {c: j for j, c in enumerate(lay.columns)}
    line = lay.data_start
    while True:
        chunk: list[Sequence[object]] = []
        lines: list[int] = []
        for row in rows:
            line += 1
            if _blank(row):
                continue  # blank rows separate blocks in reports; they are not records (as in CSV)
            chunk.append(row)
            lines.append(line)
            if len(chunk) >= CHUNK_ROWS:
                break
        if not chunk:
            return
        n = len(chunk)
        arrays = []
        for name in columns:
            j = where.get(name)
            if j is None:
                arrays.append(pa.array([""] * n, type=pa.string()))
                continue
            texts, big = _column_texts([r[j] for r in chunk])
            if big is not None and name not in seen_big:
                seen_big.add(name)
                warnings.append(
                    f"column '{name}' holds whole numbers of more than 15 digits (first: {texts[big]} on row "
                    f"{lines[big]} of sheet '{lay.name}'); Excel keeps only 15 significant digits, so such ids may "
                    "already be rounded — store ids as text in the source and export again"
                )
            arrays.append(pa.array(texts, type=pa.string()))
        arrays.append(pa.array(lines, type=pa.int64()))
        names = [*columns, LINE]
        if many:
            arrays.append(pa.array([lay.name] * n, type=pa.string()))
            names.append(SHEET)
        yield pa.RecordBatch.from_arrays(arrays, names=names)
        if n < CHUNK_ROWS:
            return


def _choose(names: list[str], sheet: str | None, file: str) -> list[str]:
    if sheet is None:
        return names
    if sheet in names:
        return [sheet]
    if sheet.strip().lower() == "all":
        return names
    if sheet.strip().isdigit():
        index = int(sheet)
        if 1 <= index <= len(names):
            return [names[index - 1]]
        raise UserError(
            f"--sheet {sheet}: the workbook has {len(names)} sheet(s), in order: {_listing(names)}; pass a number "
            f"from 1 to {len(names)}, a name, or all",
            file=file,
        )
    raise UserError(
        f"no sheet named '{sheet}'; the sheets are: {_listing(names)}; pass a name, a number (1 = first) or all "
        "with --sheet",
        file=file,
    )


def _listing(names: list[str]) -> str:
    return ", ".join(names)


def _sheet(wb: Any, name: str, file: str) -> Any:
    try:
        return wb.get_sheet_by_name(name)
    except Exception as exc:  # a damaged sheet part
        raise UserError(
            f"cannot read sheet '{name}' ({_first_line(exc)}); save the workbook again as XLSX or CSV", file=file
        ) from exc


def _hidden(wb: Any) -> set[str]:
    try:
        return {m.name for m in wb.sheets_metadata if str(m.visible).rsplit(".", 1)[-1].lower() != "visible"}
    except Exception:  # metadata missing for some formats: treat every sheet as visible
        return set()


def _col0(sheet: Any) -> int:
    return sheet.start[1] if sheet.start is not None else 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
