"""Column mapping: source headers → canonical fields, from Chinese/English synonyms, config and --map."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tierwise.errors import UserError
from tierwise.schema import CUSTOMERS, ORDER_CUSTOMER_FIELDS, TableSpec, normalise_header

IGNORE = "ignore"


@dataclass
class Mapping:
    fields: dict[str, str]  # canonical field → source column
    unmapped: list[str]  # source columns not used (kept as attributes for customers)
    carried: dict[str, str] = field(default_factory=dict)  # customer field → source column (orders only)
    how: dict[str, str] = field(default_factory=dict)  # canonical field → "auto" | "config" | "--map"

    def as_json(self) -> dict[str, object]:
        return {
            "fields": dict(self.fields),
            "customer_fields": dict(self.carried),
            "unmapped": list(self.unmapped),
            "how": dict(self.how),
        }


def parse_map_options(options: list[str]) -> dict[str, str]:
    """`--map 实收款=amount` → {"实收款": "amount"}."""
    pairs: dict[str, str] = {}
    for opt in options:
        source, sep, target = opt.rpartition("=")
        if not sep or not source.strip() or not target.strip():
            raise UserError(f"--map '{opt}' is not SOURCE_COLUMN=field; e.g. --map 实收款=amount")
        pairs[source.strip()] = target.strip()
    return pairs


def _synonym_index(spec: TableSpec) -> dict[str, str]:
    index: dict[str, str] = {}
    for f in spec.fields:
        for key in (f.name, f.label_zh, *f.synonyms):
            index.setdefault(normalise_header(key), f.name)
    return index


PARENT_SEP = " / "  # a two-row spreadsheet header names its columns "parent / child" ("金额 / 含税")


def header_keys(column: str) -> list[str]:
    """The normalised names a column is matched by, in order: the whole name, then — for a two-row header's
    "parent / child" — the child, then the parent ("金额 / 含税" is an amount; "客户信息 / 客户编号" a customer id)."""
    keys = [normalise_header(column)]
    parent, sep, child = column.partition(PARENT_SEP)
    if sep:
        keys += [normalise_header(child), normalise_header(parent)]
    return [k for k in keys if k]


def header_score(spec: TableSpec, configured: dict[str, str] | None = None) -> Callable[[list[str]], int]:
    """How many cells of a row are headers of `spec`'s fields (synonyms, or columns named in [mapping]):
    the spreadsheet reader takes the best-scoring row near the top as the header."""
    index = _synonym_index(spec)
    named = {normalise_header(c) for c in (configured or {})}

    def score(cells: list[str]) -> int:
        found = set()
        for cell in cells:
            for key in header_keys(cell):
                if key in named:
                    found.add(f"config:{key}")
                    break
                if key in index:
                    found.add(index[key])
                    break
        return len(found)

    return score


def resolve_mapping(
    columns: list[str],
    spec: TableSpec,
    configured: dict[str, str],
    cli: dict[str, str],
    *,
    file: str,
) -> Mapping:
    fields: dict[str, str] = {}
    how: dict[str, str] = {}
    used: set[str] = set()
    allowed = set(spec.names)
    carried_allowed = set(ORDER_CUSTOMER_FIELDS) if spec.name == "orders" else set()
    carried: dict[str, str] = {}

    for origin, pairs in (("--map", cli), ("config", configured)):
        for source, target in pairs.items():
            if source not in columns:
                if origin == "--map":
                    raise UserError(
                        f"--map names column '{source}', which is not in the file; the columns are: "
                        + ", ".join(columns),
                        file=file,
                        line=1,
                    )
                continue
            if source in used:
                continue
            if target == IGNORE:
                used.add(source)
                continue
            if target in carried_allowed and target not in allowed:
                carried.setdefault(target, source)
                used.add(source)
                continue
            if target not in allowed:
                raise UserError(
                    f"'{source}' is mapped to '{target}', which is not a field of {spec.name}; "
                    f"the fields are: {', '.join(spec.names)}",
                    file=file,
                    column=source,
                )
            if target not in fields:
                fields[target] = source
                how[target] = origin
                used.add(source)

    index = _synonym_index(spec)
    carried_index = {k: v for k, v in _synonym_index(CUSTOMERS).items() if v in carried_allowed}
    for col in columns:
        if col in used:
            continue
        # The first column claiming a field wins; a "parent / child" name tries whole, child, then parent.
        for key in header_keys(col):
            found = index.get(key)
            if found is not None and found not in fields:
                fields[found] = col
                how[found] = "auto"
                used.add(col)
                break
            ctarget = carried_index.get(key)
            if ctarget is not None and ctarget not in carried:
                carried[ctarget] = col
                used.add(col)
                break

    for f in spec.fields:
        if not f.required or f.name in fields:
            continue
        alternative = spec.derived.get(f.name)
        if alternative and all(a in fields for a in alternative):
            continue
        hint = f" (or {' × '.join(alternative)})" if alternative else ""
        raise UserError(
            f"no column for the required field '{f.name}' ({f.label_zh}){hint}; the columns are: "
            f"{', '.join(columns)}; name it with --map COLUMN={f.name} or in [mapping.{_config_key(spec)}]",
            file=file,
            line=1,
        )
    unmapped = [c for c in columns if c not in used]
    return Mapping(fields, unmapped, carried, how)


def _config_key(spec: TableSpec) -> str:
    return "campaigns" if spec.name == "campaign_contacts" else spec.name
