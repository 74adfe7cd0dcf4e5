"""History of runs: comparisons and migration (compare), trends and timelines (trends), backfill, grade
hysteresis (stability) and scheduled runs (schedule). See docs/history.md."""
