"""Money: stored as exact decimals (MONEY), used as floats by models and ratios, added up exactly for the totals
people compare with their own books.

The canonical tables store every amount as DECIMAL(18,4) (tierwise.workspace.IBIS_TYPES); sums over them are
exact. Per-customer figures (monetary, profit, overdue_amount …) are such exact sums converted to float64 once,
in the features, because everything after them (scores, grades, clusters, CLV models, pandas/numpy code,
JSON) wants plain floats. A float holds 15 significant digits exactly, so a per-customer sum with 4 places
(below 10^11) converts back to the same decimal: `exact_total` does that before adding customers up, so a
headline total equals the source's sum to the cent instead of drifting in the last float bits.
"""

from __future__ import annotations

import decimal

import ibis.expr.datatypes as dt
import ibis.expr.types as ir

# The type of a stored amount (tierwise.workspace.IBIS_TYPES["amount"]): 18 digits with 4 places, up to
# 99,999,999,999,999.9999 per value (any order line, payment or credit limit of any currency). 4 places cover
# every currency in use (at most 3 minor-unit digits) and the sub-cent unit prices some price lists carry. DuckDB
# keeps DECIMAL(18,4) in 64 bits, so storing, comparing and adding costs about what DOUBLE did; a sum is
# DECIMAL(38,4), exact. Spark has the same type (decimal(18,4); sums decimal(28,4)).
MONEY = dt.Decimal(18, 4)
# A per-customer figure brought back to exact decimals before adding customers up; room for totals of totals.
_TOTAL = dt.Decimal(38, 4)


def exact_total(column: ir.NumericColumn, where: ir.BooleanValue | None = None) -> ir.NumericScalar:
    """The exact decimal sum of money figures (MONEY columns, or the float per-customer figures of a snapshot).

    The result is a decimal in the engine; read it with `as_float` (or float()) for display."""
    exact = column if column.type().is_decimal() else column.round(4).cast(_TOTAL)
    return exact.sum(where=where) if where is not None else exact.sum()


def as_float(value: object) -> float | None:
    """A money value read from the engine (Decimal, float, int or None) as a float for JSON, tables and charts.
    The float nearest an exact total prints the total's cents correctly."""
    if value is None:
        return None
    assert isinstance(value, decimal.Decimal | float | int), type(value)
    return float(value)
