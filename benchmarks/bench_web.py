"""Web API and dashboard under load (issue 7): 50 concurrent clients on a workspace of 1 million customers.

    .venv/bin/python benchmarks/bench_web.py --customers 1000000 --keep /tmp/bench-web

Not a test: a load script, bounded in requests and in seconds per scenario, talking to a server on the loopback
interface only (127.0.0.1, a free port). Steps:

1. Prepare (once; reused with --keep DIR): generate B2C data as Parquet (`tierwise generate`, seed 1, the
   default two years of history), ingest customers, orders and interactions into a workspace, run the main job
   twice (as of 2024-06-30 and as of the default date) so the overview has a previous run to compare with, and
   add an admin user.
2. Service baseline, in this process, before the server holds the database: the service functions behind the
   endpoints (`customers.customer_detail`, `customers.list_customers`, `overview.overview`) called one at a
   time on the workspace — no HTTP, no JSON encoding, no concurrency. That is the floor of each request.
3. Start `tierwise serve -w WS --host 127.0.0.1 --port P` in a child process, log in (an API token for the JSON
   endpoints; the login form's session cookie for the HTML page), and per scenario:
     seq   one client, requests one after another (the unloaded latency over HTTP);
     load  --clients (50) clients, each with its own connection, each pausing a random think time between
           requests (exponential, mean --think: 7 s by default, the emulated browser of the TPC-W web benchmark;
           0 sends back to back) until --requests are done or --seconds have passed (requests already sent are
           waited for). The clients start spread over one think time; before the clock starts each has opened
           its connection and a warm-up round (every client, not measured) has opened the server's threads.
   Before each measurement the script waits until the server is idle.
   Scenarios: health (GET /health: the HTTP floor), lookup (GET /api/v1/customers/{id}, random ids), list
   (GET /api/v1/customers?where=…&sort=…&page=…, random filters, sorts and pages), overview-api
   (GET /api/v1/overview) and overview-page (GET /overview, the HTML page).
   Each line: requests, errors (anything but 200, or a failed request), throughput, p50/p95/p99/max latency in
   ms, and the server's CPU ms per request (user + system of the server process, from /proc: less affected by
   other load on the machine than wall time).
4. Compare with the targets (lookup and list p99 ≤ 100 ms, overview page p99 ≤ 300 ms, no errors) and print the
   load average before and after. The load generator shares the machine's cores with the server; its own CPU
   time is printed too.

Open loop (issue 21), `--rates R1 R2 …`: instead of clients, requests ARRIVE at a fixed mean rate (Poisson:
exponential gaps, each request sent at its time whether or not earlier ones were answered, over many
connections), as a sales team's browsers do; latency is counted from the moment a request was due, so a server
that falls behind is charged for the queue (no coordinated omission). Per scenario (lookup, list,
overview-page) the rates are tried in order, --rate-seconds each, until p99 exceeds 100 ms or a request fails;
the last rate that held is what the server "sustains". `--busy` measures the same while the command line works
on the served workspace: a loop of `tierwise ingest orders` (the whole generated orders file again: the
cumulative export of an ordinary week, every record unchanged) and `tierwise run`, each a CLI process whose
work the server does (the CLI forwards it; tierwise.cli.remote).

`--wait-quiet S` waits up to S seconds for the 1-minute load average to fall below 1.5 before measuring.
With --keep, the data and the workspace are reused by later invocations (delete the folder when the canonical
schema changes); without it everything lives in a temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"  # loopback only
PASSWORD = "bench-web-password"
ADMIN = "bench"
FIRST_AS_OF = dt.date(2024, 6, 30)
TARGETS_MS = {"lookup": 100.0, "list": 100.0, "overview-page": 300.0}
QUIET_LOAD = 1.5
# A request sent before the deadline is waited for (up to this long), so that slow answers count as slow, not as
# errors, and the next scenario does not start while the server still works on this one's backlog.
REQUEST_TIMEOUT = 600.0
SCENARIOS = ("health", "lookup", "list", "overview-api", "overview-page")

# Filtered lists as the customers page sends them: a condition in the rule language, a sort, a page.
WHERES = [
    "grade = 'A'",
    "grade in ('A', 'B') and monetary > 500",
    "rfm_segment = 'at_risk'",
    "rfm_segment = 'champions' and frequency >= 3",
    "abc_class = 'C' and recency_days > 365",
    "lifecycle_stage = 'active'",
    "monetary > 1000",
    "recency_days < 90 and frequency > 2",
    None,
]
SORTS = ["priority_rank", "-monetary", "recency_days", "-frequency", "customer_id", "-composite_score"]


def _load() -> float:
    return os.getloadavg()[0]


def _uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


# ---------------------------------------------------------------------------------------------- preparation


def _quiet(ws: Any) -> None:
    """No DuckDB progress bar on this script's output."""
    ws.con.raw_sql("SET enable_progress_bar = false")


def prepare(folder: Path, customers: int) -> dict[str, Any]:
    """Generate, ingest, run twice, add the admin — once per folder; the summary is kept in prepared.json."""
    summary_file = folder / "prepared.json"
    if summary_file.exists():
        summary: dict[str, Any] = json.loads(summary_file.read_text())
        if summary.get("customers_requested") == customers:
            return summary
        raise SystemExit(f"{folder} holds a workspace of {summary.get('customers_requested'):,} customers; "
                         "use another --keep folder or delete it")  # fmt: skip
    from tierwise.generate import generate
    from tierwise.ingest.pipeline import ingest_file
    from tierwise.pipeline.execute import run
    from tierwise.web.accounts import Accounts
    from tierwise.workspace import Workspace

    folder.mkdir(parents=True, exist_ok=True)
    data, ws_dir = folder / "data", folder / "ws"
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not (data / "interactions.parquet").exists():
        generate(data, customers=customers, seed=1, profile="b2c", fmt="parquet")
    timings["generate_s"] = time.perf_counter() - t0
    print(f"  generated {customers:,} customers: {timings['generate_s']:.1f} s", flush=True)
    shutil.rmtree(ws_dir, ignore_errors=True)
    Workspace.init(ws_dir).close()
    ws = Workspace.open(ws_dir)
    _quiet(ws)
    try:
        t0 = time.perf_counter()
        tables = ("customers", "orders", "interactions")
        rows = {t: ingest_file(ws, t, data / f"{t}.parquet").rows_loaded for t in tables}
        timings["ingest_s"] = time.perf_counter() - t0
        print(f"  ingested {rows}: {timings['ingest_s']:.1f} s", flush=True)
        for key, as_of in (("run1_s", FIRST_AS_OF), ("run2_s", None)):
            t0 = time.perf_counter()
            run(ws, as_of)
            timings[key] = time.perf_counter() - t0
            print(f"  run as of {as_of or 'default'}: {timings[key]:.1f} s", flush=True)
    finally:
        ws.close()
    accounts = Accounts(ws_dir)
    if accounts.get(ADMIN) is None:
        accounts.add_user(ADMIN, "admin", PASSWORD)
    summary = {"customers_requested": customers, "rows": rows, **timings}
    summary_file.write_text(json.dumps(summary, indent=1))
    return summary


# ------------------------------------------------------------------------------------------ service baseline


def _percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    s = sorted(ms)

    def q(p: float) -> float:  # nearest rank
        return s[min(len(s) - 1, max(0, round(p * len(s) + 0.5) - 1))]

    return {"p50": statistics.median(s), "p95": q(0.95), "p99": q(0.99), "max": s[-1]}


def service_baseline(ws_dir: Path, ids: list[str], lists: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The service functions called directly, one at a time (the floor below HTTP)."""
    from tierwise.web.services import customers, overview
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    _quiet(ws)
    out: dict[str, Any] = {}
    try:

        def timed(name: str, calls: list[Callable[[], Any]]) -> None:
            calls[0]()  # warm: first use of the tables
            ms = []
            for fn in calls:
                t0 = time.perf_counter()
                fn()
                ms.append(1000 * (time.perf_counter() - t0))
            out[name] = {"calls": len(ms), **_percentiles(ms), "mean": statistics.fmean(ms)}

        sample = ids[:n]
        few = sample[: max(3, n // 10)]  # the full lookup and the overview take seconds at a million customers
        detail = customers.customer_detail
        timed("lookup", [partial(detail, ws, i) for i in few])
        timed("lookup-no-xsell", [partial(detail, ws, i, with_cross_sell=False) for i in sample])
        timed("lookup-core", [partial(detail, ws, i, with_timeline=False, with_cross_sell=False) for i in sample])
        timed("list", [partial(customers.list_customers, ws, **_list_kwargs(q)) for q in lists[:n]])
        timed("overview", [partial(overview.overview, ws) for _ in few])
    finally:
        ws.close()
    return out


def _list_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    return {"where": params.get("where"), "sort": params["sort"], "page": params["page"],
            "page_size": params["page_size"]}  # fmt: skip


def sample_ids(ws_dir: Path, count: int, seed: int) -> list[str]:
    from tierwise.workspace import Workspace

    ws = Workspace.open(ws_dir)
    try:
        table = ws.con.sql("select customer_id from customers").to_pyarrow()
    finally:
        ws.close()
    ids = table.column("customer_id").to_pylist()
    rng = random.Random(seed)
    return [str(i) for i in rng.sample(ids, min(count, len(ids)))]


def list_queries(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    queries = []
    for _ in range(count):
        q: dict[str, Any] = {"sort": rng.choice(SORTS), "page": rng.randint(1, 20), "page_size": 50}
        where = rng.choice(WHERES)
        if where is not None:
            q["where"] = where
        queries.append(q)
    return queries


# ------------------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_s(self) -> float:
        """User + system CPU seconds of the server process (and its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(ws_dir: Path, log: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "tierwise.cli", "serve", "-w", str(ws_dir), "--host", HOST, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = Server(proc, port, log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server stopped (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    server.stop()
    raise SystemExit(f"the server did not answer /health within 120 s; see {log}")


# ------------------------------------------------------------------------------------------------ the clients


@dataclass
class Result:
    scenario: str
    mode: str
    clients: int
    ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    rate: float = 0.0  # open loop: the offered arrival rate (requests a second)

    @property
    def requests(self) -> int:
        return len(self.ms) + self.errors

    def line(self) -> str:
        p = _percentiles(self.ms)
        rate = self.requests / self.seconds if self.seconds else 0.0
        cpu = 1000 * self.server_cpu_s / self.requests if self.requests else float("nan")
        return (f"{self.scenario:<14} {self.mode:<5} {self.clients:>3} {self.requests:>6} {self.errors:>4} "
                f"{rate:>8.1f} {p['p50']:>8.1f} {p['p95']:>8.1f} {p['p99']:>8.1f} {p['max']:>8.1f} {cpu:>8.1f} "
                f"{self.seconds:>6.1f}")  # fmt: skip

    def open_line(self) -> str:
        p = _percentiles(self.ms)
        done = len(self.ms) / self.seconds if self.seconds else 0.0
        cpu = 1000 * self.server_cpu_s / self.requests if self.requests else float("nan")
        held = "held" if self.errors == 0 and p["p99"] <= OPEN_TARGET_MS else "MISSED"
        return (f"{self.scenario:<14} {self.mode:<5} {self.rate:>7.1f} {self.requests:>6} {self.errors:>4} "
                f"{done:>8.1f} {p['p50']:>8.1f} {p['p95']:>8.1f} {p['p99']:>8.1f} {p['max']:>8.1f} {cpu:>8.1f} "
                f"{held:>6}")  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "mode": self.mode, "clients": self.clients, "rate": self.rate,
                "requests": self.requests,
                "errors": self.errors, "seconds": self.seconds,
                "throughput": self.requests / self.seconds if self.seconds else 0.0,
                "server_cpu_ms_per_request": 1000 * self.server_cpu_s / self.requests if self.requests else None,
                "client_cpu_s": self.client_cpu_s, **_percentiles(self.ms),
                "error_samples": self.error_samples}  # fmt: skip


OPEN_HEADER = (f"{'scenario':<14} {'mode':<5} {'rate/s':>7} {'reqs':>6} {'err':>4} {'done/s':>8} {'p50 ms':>8} "
               f"{'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'cpu/req':>8} {'p99≤100':>6}")  # fmt: skip
HEADER = (f"{'scenario':<14} {'mode':<5} {'cl':>3} {'reqs':>6} {'err':>4} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'p99 ms':>8} {'max ms':>8} {'cpu/req':>8} {'secs':>6}")  # fmt: skip


def _client_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def drive(
    server: Server,
    scenario: str,
    make_request: Callable[[random.Random], tuple[str, dict[str, Any] | None]],
    *,
    clients: int,
    requests: int,
    seconds: float,
    headers: dict[str, str],
    cookies: dict[str, str] | None,
    think: float,
    seed: int,
) -> Result:
    result = Result(scenario, "load" if clients > 1 else "seq", clients)
    remaining = requests
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    async def client(index: int) -> None:
        nonlocal remaining
        rng = random.Random(seed * 1000 + index)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, cookies=cookies, limits=limits,
                                     timeout=REQUEST_TIMEOUT) as http:  # fmt: skip
            await http.get("/health")  # the connection is opened before the clock starts (not measured)
            await started.wait()
            if think:  # ramp-up: users arrive spread over one think time, not all in the same millisecond
                await asyncio.sleep(rng.uniform(0, think))
            while remaining > 0 and time.monotonic() < deadline:
                remaining -= 1
                path, params = make_request(rng)
                t0 = time.perf_counter()
                try:
                    response = await http.get(path, params=params)
                    elapsed = 1000 * (time.perf_counter() - t0)
                    await response.aread()
                    if response.status_code == 200:
                        result.ms.append(elapsed)
                    else:
                        result.errors += 1
                        if len(result.error_samples) < 5:
                            result.error_samples.append(f"{response.status_code} {path} {params} "
                                                        f"{response.text[:200]}")  # fmt: skip
                except httpx.HTTPError as exc:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{type(exc).__name__} {path} {params}: {exc}")
                if think:
                    await asyncio.sleep(rng.expovariate(1 / think))

    started = asyncio.Event()
    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    await asyncio.sleep(0.5)  # every client has its connection open
    cpu0, client0, t0 = server.cpu_s(), _client_cpu(), time.perf_counter()
    deadline = time.monotonic() + seconds
    started.set()
    await asyncio.gather(*tasks)
    result.seconds = time.perf_counter() - t0
    result.server_cpu_s = server.cpu_s() - cpu0
    result.client_cpu_s = _client_cpu() - client0
    return result


OPEN_TARGET_MS = 100.0
OPEN_SCENARIOS = ("lookup", "list", "overview-page")


async def open_loop(
    server: Server,
    scenario: str,
    make_request: Callable[[random.Random], tuple[str, dict[str, Any] | None]],
    *,
    rate: float,
    seconds: float,
    headers: dict[str, str],
    cookies: dict[str, str] | None,
    seed: int,
) -> Result:
    """Requests arriving at `rate` a second (Poisson) for `seconds`; each latency from its due time."""
    result = Result(scenario, "open", 0)
    result.rate = rate
    rng = random.Random(seed)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)

    async def one(http: httpx.AsyncClient, path: str, params: dict[str, Any] | None, due: float) -> None:
        try:
            response = await http.get(path, params=params)
            await response.aread()
            elapsed = 1000 * (time.perf_counter() - due)
            if response.status_code == 200:
                result.ms.append(elapsed)
            else:
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{response.status_code} {path} {response.text[:200]}")
        except httpx.HTTPError as exc:
            result.errors += 1
            if len(result.error_samples) < 5:
                result.error_samples.append(f"{type(exc).__name__} {path}: {exc}")

    async with httpx.AsyncClient(base_url=server.url, headers=headers, cookies=cookies, limits=limits,
                                 timeout=REQUEST_TIMEOUT) as http:  # fmt: skip
        cpu0, client0 = server.cpu_s(), _client_cpu()
        start = time.perf_counter()
        tasks = []
        due = rng.expovariate(rate)
        while due < seconds:
            delay = start + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path, params = make_request(rng)
            tasks.append(asyncio.create_task(one(http, path, params, start + due)))
            due += rng.expovariate(rate)
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - start
        result.server_cpu_s = server.cpu_s() - cpu0
        result.client_cpu_s = _client_cpu() - client0
    return result


class CommandLoop:
    """`tierwise ingest orders FILE` and `tierwise run` on the served workspace, one after the other, again and
    again in a thread until stopped: the command line's work going through the server while pages are served."""

    def __init__(self, ws_dir: Path, exports: list[Path], log: Path) -> None:
        self.exports = list(exports)
        self.ws_dir, self.log = ws_dir, log
        self.done: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cli-loop", daemon=True)

    def _loop(self) -> None:
        with self.log.open("ab") as log:
            while not self._stop.is_set():
                ingest = [["ingest", "orders", str(self.exports.pop(0))]] if self.exports else []
                for command in [*ingest, ["run"]]:
                    t0 = time.perf_counter()
                    proc = subprocess.run([sys.executable, "-m", "tierwise.cli", *command, "-w", str(self.ws_dir)],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
                    self.done.append({"command": command[0], "exit": proc.returncode,
                                      "seconds": time.perf_counter() - t0})  # fmt: skip
                    if self._stop.is_set():
                        break

    def __enter__(self) -> CommandLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        parts = []
        for name in ("ingest", "run"):
            runs = [d for d in self.done if d["command"] == name]
            failed = sum(1 for d in runs if d["exit"] != 0)
            mean = statistics.fmean(d["seconds"] for d in runs) if runs else float("nan")
            parts.append(f"{len(runs)} {name} ({failed} failed, mean {mean:.1f} s)")
        return ", ".join(parts)


def cumulative_exports(orders: Path, folder: Path, weeks: int, new_orders: int = 1000) -> list[Path]:
    """Week k's export: every order of the generated file plus `new_orders` new ones for each week up to k, as a
    system exporting all orders to date writes it. Each differs from the last, so each is read and compared."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    # New files each time (a workspace remembers every file it loaded, and would skip them as already loaded).
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    stamp = dt.datetime.now().strftime("%H%M%S")
    paths = [folder / f"orders-week{k + 1}-{stamp}.parquet" for k in range(weeks)]
    table = pq.read_table(orders)
    extra = []
    for k, path in enumerate(paths):
        week = table.slice(k * new_orders, new_orders)
        ids = pc.binary_join_element_wise(week["order_id"].cast(pa.string()), pa.scalar(f"-{stamp}w{k + 1}"), "")
        extra.append(week.set_column(week.schema.get_field_index("order_id"), "order_id", ids))
        pq.write_table(pa.concat_tables([table, *extra]), path)
    return paths


def run_open_loop(server: Server, ids: list[str], lists: list[dict[str, Any]], args: argparse.Namespace,
                  busy: bool) -> list[Result]:  # fmt: skip
    bearer, cookies = login(server)
    html = {"Accept": "text/html"}
    makers = {
        "lookup": (lambda rng: (f"/api/v1/customers/{rng.choice(ids)}", None), bearer, None),
        "list": (lambda rng: ("/api/v1/customers", rng.choice(lists)), bearer, None),
        "overview-page": (lambda rng: ("/overview", None), html, cookies),
    }  # fmt: skip
    results: list[Result] = []
    for i, scenario in enumerate(s for s in OPEN_SCENARIOS if s in args.scenarios):
        make, headers, jar = makers[scenario]
        warm = open_loop(server, scenario, make, rate=min(args.rates), seconds=5, headers=headers, cookies=jar, seed=9)
        asyncio.run(warm)  # not measured: the first requests open tables and fill caches
        for rate in args.rates:
            if not busy:
                drain(server)
            r = asyncio.run(open_loop(server, scenario, make, rate=rate, seconds=args.rate_seconds,
                                      headers=headers, cookies=jar, seed=i * 100 + int(rate)))  # fmt: skip
            r.mode = "busy" if busy else "quiet"
            results.append(r)
            print(r.open_line(), flush=True)
            for sample in r.error_samples:
                print(f"    error: {sample}", flush=True)
            if r.errors or _percentiles(r.ms)["p99"] > OPEN_TARGET_MS:
                break
    return results


def sustained(results: list[Result]) -> dict[str, dict[str, float]]:
    """Per mode and scenario, the highest rate tried whose p99 held 100 ms without errors (0: none held)."""
    out: dict[str, dict[str, float]] = {}
    for r in results:
        held = r.errors == 0 and _percentiles(r.ms)["p99"] <= OPEN_TARGET_MS
        best = out.setdefault(r.mode, {}).setdefault(r.scenario, 0.0)
        if held and r.rate > best:
            out[r.mode][r.scenario] = r.rate
    return out


def login(server: Server) -> tuple[dict[str, str], dict[str, str]]:
    """An API token (JSON endpoints) and a session cookie from the login form (the HTML page)."""
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/api/v1/auth/login", json={"username": ADMIN, "password": PASSWORD})
        r.raise_for_status()
        token = http.post(f"/api/v1/users/{ADMIN}/tokens", headers={"X-CSRF-Token": r.json()["csrf_token"]})
        token.raise_for_status()
        cookies = {"tierwise_session": http.cookies["tierwise_session"]}
    return {"Authorization": f"Bearer {token.json()['token']}"}, cookies


def drain(server: Server, timeout: float = 600.0) -> float:
    """Wait until the server is idle (under 5% of a core for a second): work of requests whose clients gave
    up must not be counted against the next scenario. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        before = server.cpu_s()
        time.sleep(1.0)
        if server.cpu_s() - before < 0.05:
            break
    return time.monotonic() - t0


def run_load(server: Server, ids: list[str], lists: list[dict[str, Any]], args: argparse.Namespace) -> list[Result]:
    bearer, cookies = login(server)
    html = {"Accept": "text/html"}
    makers: dict[str, tuple[Callable[[random.Random], tuple[str, dict[str, Any] | None]], dict[str, str],
                            dict[str, str] | None]] = {
        "health": (lambda rng: ("/health", None), {}, None),
        "lookup": (lambda rng: (f"/api/v1/customers/{rng.choice(ids)}", None), bearer, None),
        "list": (lambda rng: ("/api/v1/customers", rng.choice(lists)), bearer, None),
        "overview-api": (lambda rng: ("/api/v1/overview", None), bearer, None),
        "overview-page": (lambda rng: ("/overview", None), html, cookies),
    }  # fmt: skip
    results: list[Result] = []
    for i, scenario in enumerate(s for s in SCENARIOS if s in args.scenarios):
        make, headers, jar = makers[scenario]
        # Warm-up (not measured): the first request of a kind opens tables and fills caches, and the first
        # request on each of the server's threads opens that thread's connection; so every client sends a few.
        warm = asyncio.run(drive(server, scenario, make, clients=args.clients, requests=3 * args.clients,
                                 seconds=60, headers=headers, cookies=jar, think=0, seed=999 + i))  # fmt: skip
        if warm.errors:
            print(f"  warm-up of {scenario} failed: {warm.error_samples}", flush=True)
        for clients, requests, seconds in ((1, args.seq_requests, args.seq_seconds),
                                           (args.clients, args.requests, args.seconds)):  # fmt: skip
            drain(server)
            r = asyncio.run(drive(server, scenario, make, clients=clients, requests=requests, seconds=seconds,
                                  headers=headers, cookies=jar, think=args.think if clients > 1 else 0,
                                  seed=i * 7 + clients))  # fmt: skip
            results.append(r)
            print(r.line(), flush=True)
            for sample in r.error_samples:
                print(f"    error: {sample}", flush=True)
    return results


# ------------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="Folder for the data and workspace, reused by later runs")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=3000, help="Requests per scenario under load (bound)")
    parser.add_argument("--seconds", type=float, default=120, help="Seconds per scenario and mode (bound)")
    parser.add_argument("--seq-requests", type=int, default=100, help="Requests per scenario from one client")
    parser.add_argument("--seq-seconds", type=float, default=30, help="Seconds per scenario from one client (bound)")
    parser.add_argument(
        "--think",
        type=float,
        default=7.0,
        help="Mean think time (s) between a client's requests under load (TPC-W's 7 s); 0: back to back",
    )
    parser.add_argument("--baseline", type=int, default=100, help="Service calls per kind in the baseline")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help=f"Wait up to this many seconds for the load average to fall below {QUIET_LOAD}",
    )
    parser.add_argument(
        "--rates",
        type=float,
        nargs="+",
        help="Open loop: arrival rates (requests a second) to try in order, per scenario",
    )
    parser.add_argument("--rate-seconds", type=float, default=30, help="Open loop: seconds per rate")
    parser.add_argument(
        "--busy", action="store_true", help="Open loop: measure also while CLI ingests and runs go through the server"
    )
    parser.add_argument("--skip-quiet", action="store_true", help="Open loop: only the --busy measurement")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="tw-bench-web-"))
    server: Server | None = None
    try:
        print(f"preparing {args.customers:,} customers in {folder}", flush=True)
        prepared = prepare(folder, args.customers)
        ws_dir = folder / "ws"
        ids = sample_ids(ws_dir, 5000, args.seed)
        lists = list_queries(1000, args.seed)

        if args.wait_quiet:
            deadline = time.monotonic() + args.wait_quiet
            while _load() >= QUIET_LOAD and time.monotonic() < deadline:
                time.sleep(10)
        load_before = _uptime()
        print(f"{load_before} before measuring", flush=True)

        print(f"service baseline (in process, one call at a time, {args.baseline} calls per kind):", flush=True)
        baseline = service_baseline(ws_dir, ids, lists, args.baseline)
        for name, b in baseline.items():
            print(f"  {name:<12} mean {b['mean']:7.1f} ms  p50 {b['p50']:7.1f}  p95 {b['p95']:7.1f}  "
                  f"p99 {b['p99']:7.1f}  max {b['max']:7.1f}", flush=True)  # fmt: skip

        server = start_server(ws_dir, folder / "server.log")
        if args.rates:
            print(f"server on {server.url} (pid {server.proc.pid}); open loop, {args.rate_seconds:.0f} s per rate",
                  flush=True)  # fmt: skip
        else:
            print(f"server on {server.url} (pid {server.proc.pid}); {args.clients} clients, ≤ {args.requests} "
                  f"requests and ≤ {args.seconds:.0f} s per scenario, think time {args.think} s",
                  flush=True)  # fmt: skip
        cli_loop = ""
        if args.rates:
            print(OPEN_HEADER, flush=True)
            results = [] if args.skip_quiet else run_open_loop(server, ids, lists, args, busy=False)
            if args.busy:
                exports = cumulative_exports(folder / "data" / "orders.parquet", folder / "exports", 4)
                with CommandLoop(ws_dir, exports, folder / "cli.log") as loop:
                    results += run_open_loop(server, ids, lists, args, busy=True)
                cli_loop = loop.summary()
                print(f"command line meanwhile: {cli_loop} (output in {folder / 'cli.log'})", flush=True)
        else:
            print(HEADER, flush=True)
            results = run_load(server, ids, lists, args)
        load_after = _uptime()
        print(f"{load_after} after measuring", flush=True)
        server.stop()
        unexpected = [line for line in server.log.read_text(errors="replace").splitlines()
                      if "unexpected" in line or "Traceback" in line]  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)

    if args.rates:
        held = sustained(results)
        print(f"\nsustained with p99 ≤ {OPEN_TARGET_MS:.0f} ms and no errors (requests a second; open loop, "
              f"{args.rate_seconds:.0f} s per rate):")  # fmt: skip
        for mode, rates in held.items():
            print(f"  {mode:<6} " + ", ".join(f"{k} {v:g}/s" for k, v in rates.items()))
        if cli_loop:
            print(f"  command line during busy: {cli_loop}")
        if args.json:
            args.json.write_text(json.dumps({
                "customers": args.customers, "prepared": prepared, "rates": args.rates,
                "rate_seconds": args.rate_seconds, "load_before": load_before, "load_after": load_after,
                "baseline": baseline, "results": [r.as_dict() for r in results], "sustained": held,
                "command_line": cli_loop, "server_log_unexpected": unexpected[:5],
            }, indent=1))  # fmt: skip
        return
    print("\ntargets (under load, p99):")
    ok = True
    for r in results:
        if r.mode != "load":
            continue
        p99 = _percentiles(r.ms)["p99"]
        target = TARGETS_MS.get(r.scenario)
        met = r.errors == 0 and (target is None or p99 <= target)
        ok &= met
        goal = f"≤ {target:.0f} ms" if target else "(no target)"
        print(f"  {r.scenario:<14} p99 {p99:8.1f} ms {goal:<12} errors {r.errors:<4} {'met' if met else 'MISSED'}")
    if unexpected:
        print(f"  server log: {len(unexpected)} unexpected errors, e.g. {unexpected[0]}")
    print(f"client process CPU: {sum(r.client_cpu_s for r in results):.1f} s in total")
    if args.json:
        args.json.write_text(json.dumps({
            "customers": args.customers, "prepared": prepared, "clients": args.clients, "think": args.think,
            "load_before": load_before, "load_after": load_after, "baseline": baseline,
            "results": [r.as_dict() for r in results], "all_targets_met": ok,
        }, indent=1))  # fmt: skip
    print("all targets met" if ok else "targets missed")


if __name__ == "__main__":
    main()
