"""The classes of a run over its measures: RFM, ABC, value tier, lifecycle, loyalty, the composite grade (held
against earlier runs with [stability]) and the user's rule tags. Each classifier takes its section of the
configuration as it is."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ibis.expr.types as ir

from tierwise.classify.abc import add_abc
from tierwise.classify.grade import add_grade
from tierwise.classify.lifecycle import add_lifecycle
from tierwise.classify.loyalty import add_loyalty
from tierwise.classify.rfm import add_class8, add_scores, segment
from tierwise.classify.value import add_value_tier
from tierwise.config import Config
from tierwise.history.stability import apply_stability
from tierwise.pipeline.measures import indicators
from tierwise.rules import add_tags, columns_in

# A stage of the run may materialise a table it hands on (a name for the stage, the table → the table to use).
Checkpoint = Callable[[str, ir.Table], ir.Table]


def unchanged(stage: str, t: ir.Table) -> ir.Table:
    """The Checkpoint that materialises nothing: the table stays one lazy expression."""
    return t


# The measures the classifiers read. Classes are computed on these columns only and joined back: every
# ranking window sorts its rows, and carrying the wide measures (names, cities, dates…) through a dozen
# sorts cost most of the run's time on millions of customers.
CLASS_INPUTS = (
    "customer_id",
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "profit",
    "tenure_days",
    "ipt_mean_days",
    "purchases",
    "satisfaction",
    "clv_predicted",
)


def classes(t: ir.Table, cfg: Config, previous: Sequence[ir.Table] = (), keep: Checkpoint = unchanged) -> ir.Table:
    """customer_id and the classes of the measures in `t`: RFM, ABC, value tier, lifecycle, loyalty and the
    composite grade.

    With [stability] enabled, the grade is held against `previous` snapshots (most recent first), and the
    grade the score alone gives is kept as grade_raw.

    The classifiers run in three short chains, each over only the columns of `t` it reads (RFM, lifecycle and
    loyalty; ABC and value tier; the grade), joined on customer_id: every ranking window sorts whatever its
    input carries, and one chain of a dozen windows carried every class added before it (strings included)
    through each sort, which spilled to disk at 10 million customers. Three chains rather than one per
    classifier: each join holds a hash table of every customer, and many at once exhausted small memory
    limits. The classes are the same either way. `keep` may materialise each chain's classes: the run does on
    DuckDB, where one statement ran the three chains' sorts side by side and spilled (60 s against 50 s in
    parts at 10 million customers)."""
    key = "customer_id"

    def columns(*names: str) -> ir.Table:
        return t.select(key, *dict.fromkeys(n for n in names if n != key))

    rfm = cfg.rfm
    m_column = "monetary" if rfm.monetary == "total" else "avg_order_value"
    life = ("tenure_days", "ipt_mean_days", "purchases", "satisfaction")
    scored = add_scores(
        columns("recency_days", "frequency", "monetary", m_column, *life),
        monetary=m_column,
        bins=rfm.bins,
        thresholds=rfm.fixed_thresholds(),
    )
    if rfm.bins == 5:
        scored = scored.mutate(rfm_segment=segment(scored.r_score, scored.f_score))
    else:  # the named grid is defined on 5×5: place other scales on it
        on_five = [(scored[c] * 5 / rfm.bins).ceil().cast("int64") for c in ("r_score", "f_score")]
        scored = scored.mutate(rfm_segment=segment(on_five[0], on_five[1]))
    scored = add_class8(scored, basis=rfm.class8_basis)
    rfm_columns = [c for c in scored.columns if c not in t.columns]
    scored = add_lifecycle(scored, cfg.lifecycle)
    scored = add_loyalty(scored, cfg.loyalty)
    ranked = add_abc(
        columns(cfg.abc.by, cfg.value.by, "recency_days"),
        value=cfg.abc.by,
        a_cutoff=cfg.abc.a_cutoff,
        b_cutoff=cfg.abc.b_cutoff,
    )
    ranked = add_value_tier(
        ranked, value=cfg.value.by, high_share=cfg.value.high_share, medium_share=cfg.value.medium_share
    )
    scored_new = [c for c in scored.columns if c not in t.columns]
    ranked_new = [c for c in ranked.columns if c not in t.columns]
    scored = keep("rfm", scored.select(key, *scored_new))
    ranked = keep("abc", ranked.select(key, *ranked_new))

    # The grade reads the measures its indicators name (and any class they name, joined from its chain).
    named = {c for i in cfg.grade.indicators for c in columns_in(i.expression, [*t.columns, *scored_new, *ranked_new])}
    graded_in = columns("recency_days", "tenure_days", "monetary", *sorted(named & set(t.columns)))
    for part, new in ((scored, scored_new), (ranked, ranked_new)):
        wanted = [c for c in new if c in named]
        if wanted:
            graded_in = graded_in.join(part.select(key, *wanted), key)
    g = cfg.grade
    graded = add_grade(graded_in, indicators(cfg, graded_in.schema()), g)
    if cfg.stability.enabled:
        graded = apply_stability(graded, previous, cfg.stability, method=g.method, cutoffs=g.cutoffs)

    graded_new = [c for c in graded.columns if c not in graded_in.columns]
    graded = keep("grade", graded.select(key, *graded_new))
    out = scored.join(ranked, key).join(graded, key)
    life_columns = [c for c in scored_new if c not in rfm_columns]
    return out.select(key, *rfm_columns, *ranked_new, *life_columns, *graded_new)


def classify(t: ir.Table, cfg: Config, previous: Sequence[ir.Table] = (), keep: Checkpoint = unchanged) -> ir.Table:
    """Every class, the composite grade and priority, and the user's rule tags, on top of the measures."""
    used = {c for i in cfg.grade.indicators for c in columns_in(i.expression, t.columns)}
    narrow = t.select(*[c for c in t.columns if c in set(CLASS_INPUTS) | used])
    snapshot = t.join(classes(narrow, cfg, previous, keep), "customer_id")
    return add_tags(snapshot, [(r.name, r.expression) for r in cfg.rules])
