"""The numbers behind the dashboard and the REST API: plain functions over a Workspace.

Every page and its JSON twin call the same function here, so they show the same numbers. The functions know
nothing of HTTP: they take a `tierwise.workspace.Workspace` (use only that one — the server gives each request
thread its own connection) and plain arguments, return JSON-serialisable dicts and lists (dates as ISO text,
NaN as null), keep no state between calls, and raise `tierwise.errors.UserError` with a one-line message a
user can act on for bad input (the API turns it into a 4xx JSON error).

- overview: overview(ws, run_id, language) — KPIs with the change since the previous run, distributions,
  R×F heatmap, Pareto curve, region and industry breakdowns, CLV.
- segments: segments(ws, column, run_id, language), segment_members(ws, column, code, ...).
- customers: list_customers(ws, where=, search=, sort=, page=, page_size=, columns=, mask_personal=),
  customer_detail(ws, customer_id, ...), customer_columns(ws), mask_phone, mask_email.
- history: compare (with Sankey data), trends, timeline — the numbers of `tierwise compare|trends|timeline`.
- exports: export(ws, where=, columns=, fmt=, mask_personal=) → ExportFile (a temporary file to stream).
- uploads: ingest_upload(ws, table, filename, data, max_bytes=), quarantine(ws, batch_id, page), batches(ws).
- settings: read_settings, preview_settings, save_settings.
- jobs: JobManager (background work with stages and progress), run_progress.
- campaigns: list_campaigns, campaign_report.
- runs: list_runs, run_detail, models, run_job.
- refresh: refreshes, alerts (the refresh log; delivery targets only when asked), latest_alert_count (the
  navigation's badge), refresh_job (a refresh started from the dashboard).
"""
