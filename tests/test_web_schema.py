"""Schemathesis against the REST API's OpenAPI schema (issue 7): no request an admin can send gets a server error.

The schema is loaded in-process from the ASGI app (GET /api/v1/openapi.json with an admin's API token; no
network). Every operation in it is fuzzed with a bounded, deterministic number of generated requests (schema-
conforming and schema-violating ones), sent with the admin's bearer token (so CSRF does not apply and every
role check passes: the deepest code paths are reached). For each response:

  * schemathesis's `not_a_server_error` check (no 5xx),
  * an error (4xx) is JSON {"error": "<message>"}, and no body ever contains a Python traceback.

Operations that take path parameters run twice: once with generated values (mostly "no such …" answers) and
once with real ones (a customer id, run ids, a class column and code, the admin's own name), so that the query
parameters are fuzzed on a real object too. Reads come first, then writes (POST, PUT), then deletions; the admin
cannot remove or demote itself (the API refuses that) and its token id is never generated, so the admin keeps its
token throughout. Operations that start background work (runs, uploads, settings previews, refreshes) get fewer
examples; at the end the test waits for the jobs and checks none failed unexpectedly.

Driven programmatically (one test that collects every failure with the request that caused it) rather than with
`@schema.parametrize()`, because the workspace is built once and the operations must run in a fixed order.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core import NotSet  # noqa: E402

pytestmark = pytest.mark.slow

PASSWORD = "correct horse 1"
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 8}
# Operations that start background work: fewer examples (each may queue a run on the job pool).
JOB_EXAMPLES = {GenerationMode.POSITIVE: 3, GenerationMode.NEGATIVE: 3}
JOB_OPERATIONS = {
    "POST /api/v1/runs", "POST /api/v1/settings/preview", "POST /api/v1/uploads/{table}", "POST /api/v1/refresh"
}  # fmt: skip
METHOD_ORDER = {"GET": 0, "HEAD": 0, "POST": 1, "PUT": 2, "PATCH": 2, "DELETE": 3}
JOBS_TIMEOUT = 90.0


@dataclass
class Target:
    app: Any
    root: Path
    token: str
    real: dict[str, str]
    failures: list[str] = field(default_factory=list)
    calls: int = 0


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    import datetime as dt

    from fastapi.testclient import TestClient

    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.web.accounts import Accounts
    from tierwise.web.app import create_app
    from tierwise.workspace import Workspace

    root = tmp_path_factory.mktemp("schema")
    data, ws_dir = root / "data", root / "ws"
    generate(data, customers=300, seed=11)
    Workspace.init(ws_dir).close()
    ws = Workspace.open(ws_dir)
    try:
        for table in ("customers", "orders", "payments", "interactions"):
            ingest_file(ws, table, data / f"{table}.csv")
        run(ws, dt.date(2024, 6, 30))
        run(ws)
    finally:
        ws.close()
    accounts = Accounts(ws_dir)
    accounts.add_user("admin", "admin", PASSWORD)
    accounts.add_user("someone", "viewer", PASSWORD)
    _, token = accounts.create_token("admin")
    app = create_app(ws_dir)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        runs = client.get("/api/v1/runs").json()
        page = client.get("/api/v1/customers", params={"page_size": 1}).json()
        real = {
            "customer_id": str(page["rows"][0]["customer_id"]),
            "run_id": runs[0]["run_id"],
            "column": "grade",
            "code": "A",
            "username": "someone",
            "table": "interactions",
            "name": "no-such-campaign",
        }
        yield Target(app=app, root=ws_dir, token=token, real=real)


def _describe(case: Any, response: Any) -> str:
    """The request as a reproduction: method, path, query, body, and the answer."""
    query = f" query={json.dumps(case.query, ensure_ascii=False, default=str)}" if case.query else ""
    body = ""
    if case.body is not None and not isinstance(case.body, NotSet):
        body = f" body={json.dumps(case.body, ensure_ascii=False, default=str)[:500]}"
    media = f" media_type={case.media_type}" if case.media_type else ""
    text = response.text if response is not None else ""
    status = response.status_code if response is not None else None
    answer = f"{status} {text[:300]!r}" if response is not None else "(the app raised; a 500 over HTTP)"
    return f"{case.method} {case.formatted_path}{query}{body}{media} -> {answer}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _error_body_problem(response: Any) -> str | None:
    """An error answer must be JSON {"error": str}; no answer may carry a traceback."""
    text = response.text
    if "Traceback (most recent call last)" in text:
        return "response contains a Python traceback"
    if response.status_code < 400:
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return f"error response is not JSON (content-type {response.headers.get('content-type')!r})"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"].strip():
        return 'error response is not {"error": "<message>"}'
    return None


def _fuzz(target: Target, operation: Any, mode: GenerationMode, examples: int, **fixed: Any) -> None:
    headers = {"Authorization": f"Bearer {target.token}"}
    strategy = operation.as_strategy(generation_mode=mode, **fixed)
    seen: set[str] = set()  # one report per operation and problem

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not raised
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        target.calls += 1
        response = None
        try:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
            problem = _error_body_problem(response)
        except BaseExceptionGroup as group:  # schemathesis's FailureGroup: the checks that failed
            problem = "; ".join(_first_line(exc) for exc in group.exceptions)
        except Exception as exc:  # e.g. the app raised: collected with its request like any other failure
            problem = _first_line(exc)
        if problem:
            key = f"{operation.label} {problem[:60]}"
            if key not in seen:
                seen.add(key)
                target.failures.append(f"[{mode.value}] {problem}\n    {_describe(case, response)}")

    with contextlib.suppress(Unsatisfiable):  # no such request exists (a negative case of an input-less operation)
        check()


def _operations(target: Target) -> list[Any]:
    schema = schemathesis.openapi.from_asgi(
        "/api/v1/openapi.json", target.app, headers={"Authorization": f"Bearer {target.token}"}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    return sorted(operations, key=lambda op: (METHOD_ORDER.get(op.method.upper(), 1), op.path, op.method))


def _wait_for_jobs(target: Target) -> list[dict[str, Any]]:
    from fastapi.testclient import TestClient

    client = TestClient(target.app, headers={"Authorization": f"Bearer {target.token}"})
    deadline = time.monotonic() + JOBS_TIMEOUT
    while True:
        jobs = client.get("/api/v1/jobs").json()
        if all(j["state"] in ("done", "failed") for j in jobs) or time.monotonic() > deadline:
            return list(jobs)
        time.sleep(0.25)


def test_no_server_errors(target: Target) -> None:
    operations = _operations(target)
    labels = {op.label for op in operations}
    # The schema covers the API (a smoke check that it was read whole, not only the auth routes).
    assert {"GET /api/v1/customers", "GET /api/v1/customers/{customer_id}", "GET /api/v1/overview"} <= labels

    for operation in operations:
        examples = JOB_EXAMPLES if operation.label in JOB_OPERATIONS else EXAMPLES
        for mode, count in examples.items():
            _fuzz(target, operation, mode, count)
        names = {p.name for p in operation.path_parameters}
        if names and names <= set(target.real):
            fixed = {name: target.real[name] for name in names}
            _fuzz(target, operation, GenerationMode.POSITIVE, examples[GenerationMode.POSITIVE],
                  path_parameters=fixed)  # fmt: skip

    for job in _wait_for_jobs(target):
        if job["state"] not in ("done", "failed"):
            target.failures.append(f"job {job['kind']} still {job['state']} after {JOBS_TIMEOUT:.0f} s")
        elif job["state"] == "failed" and "unexpected" in str(job.get("error")):
            target.failures.append(f"job {job['kind']} failed unexpectedly: {job.get('error')}")

    assert target.calls >= len(operations)
    assert not target.failures, f"{len(target.failures)} problem(s) in {target.calls} requests:\n" + "\n".join(
        target.failures
    )
