"""Long work (ingest, run, settings preview) in the background of the server: a small in-process job manager.

`JobManager.start(kind, fn, *args, **kwargs)` queues `fn` on a pool of worker threads (2 by default) and returns
a job id at once; `status(job_id)` tells where it is: state (queued, running, done, failed, cancelled), stage,
progress (0–1 or None), the times, and the result or an error message. A function that wants to report progress
takes a keyword argument `progress` and calls it as progress(stage, fraction=None); a run reports its stages
through `run_progress(progress)`, which turns them into fractions.

`cancel(job_id)` stops a job: a queued one never starts; a running one has the DuckDB query it is running
interrupted (tierwise.cancel: every connection the job opens is registered with its token) and stops at its next
step, and ends "cancelled" once its work has been rolled back. `shutdown()` cancels every job and waits a moment
for the running ones to roll back; the worker threads are daemons, so a job stuck outside DuckDB cannot keep the
process alive after that.

Errors never leak a traceback: a UserError's message is shown as it is (it says what to do); anything else is
logged (logger "tierwise.web.jobs") and shown as "unexpected error; see the server log". Finished jobs are
kept for `keep` jobs (the oldest finished ones are forgotten first). The work runs in other threads: a job
must open or obtain its own workspace (DuckDB connection) there, not use the request's.
"""

from __future__ import annotations

import builtins
import datetime as dt
import inspect
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tierwise.cancel import CancelToken, bound
from tierwise.errors import UserError, out_of_memory
from tierwise.web.services._common import jsonable

log = logging.getLogger("tierwise.web.jobs")

UNEXPECTED = "unexpected error; see the server log"
CANCELLED = "cancelled; nothing of the unfinished work was stored"
STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
# While a cancelled job still runs, its connections are interrupted again this often: an interrupt reaches only
# the query running at that moment, and the job may be between two queries.
REINTERRUPT_SECONDS = 0.1
# The stages tierwise.pipeline.execute.run reports through on_stage, in order ("clusters" only when clustering is on).
RUN_STAGES = ("models", "measures", "classes", "clusters", "pareto", "saving")

Progress = Callable[..., None]


def run_progress(progress: Progress, clustering: bool = True) -> Callable[[str], None]:
    """An on_stage callback for tierwise.pipeline.execute.run / run_in_workspace that reports each stage with the
    share of the stages done before it."""
    stages = [s for s in RUN_STAGES if clustering or s != "clusters"]

    def on_stage(stage: str) -> None:
        done = stages.index(stage) if stage in stages else None
        progress(stage, None if done is None else done / len(stages))

    return on_stage


def ingest_progress(progress: Progress) -> Callable[[str, int], Callable[[int], None]]:
    """A `progress` factory for tierwise.ingest.pipeline.ingest_file (and uploads.ingest_upload): reading the
    file is reported as stage "reading" with the share of its bytes read; the rest (checking and loading)
    follows as stage "loading" once the file has been read."""

    def factory(name: str, total: int) -> Callable[[int], None]:
        progress("reading", 0.0)

        def tick(done: int) -> None:
            if total and done >= total:
                progress("loading", 0.9)
            else:
                progress("reading", 0.9 * done / total if total else None)

        return tick

    return factory


@dataclass
class Job:
    job_id: str
    kind: str
    state: str = "queued"
    stage: str | None = None
    progress: float | None = None
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now().replace(microsecond=0))
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    result: Any = None
    error: str | None = None
    owner: str | None = None
    cancel_requested: bool = False
    token: CancelToken = field(default_factory=CancelToken, repr=False)

    def as_json(self) -> dict[str, Any]:
        return jsonable(
            {
                "job_id": self.job_id,
                "kind": self.kind,
                "state": self.state,
                "stage": self.stage,
                "progress": self.progress,
                "created_at": self.created_at,
                "started_at": self.started_at,
                "finished_at": self.finished_at,
                "result": self.result,
                "error": self.error,
                "owner": self.owner,
                "cancel_requested": self.cancel_requested,
            }
        )


class JobManager:
    """Background jobs of one server process (thread-safe)."""

    def __init__(self, workers: int = 2, keep: int = 200) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._queue: queue.SimpleQueue[tuple[Job, Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep
        self._closed = False

    def start(self, kind: str, fn: Callable[..., Any], *args: Any, owner: str | None = None, **kwargs: Any) -> str:
        """Queue fn(*args, **kwargs) and return the job's id. If fn has a `progress` parameter, it gets a
        callable progress(stage, fraction=None) that updates the job's stage and progress (and stops a cancelled
        job there)."""
        job = Job(job_id=uuid.uuid4().hex, kind=kind, owner=owner)
        if _takes_progress(fn) and "progress" not in kwargs:
            kwargs["progress"] = self._reporter(job)
        with self._lock:
            if self._closed:
                raise UserError("the server is shutting down; start it again when the server is back")
            self._jobs[job.job_id] = job
            self._forget_old()
            busy = sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))
            # Daemon threads (not a ThreadPoolExecutor's): the interpreter does not wait for them at exit.
            if len(self._threads) < min(self._workers, busy):
                worker = threading.Thread(target=self._worker, name=f"tierwise-job-{len(self._threads)}", daemon=True)
                self._threads.append(worker)
                worker.start()
        self._queue.put((job, fn, args, kwargs))
        return job.job_id

    def status(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._get(job_id).as_json()

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every job kept, newest first (of one kind when given)."""
        with self._lock:
            jobs = [j for j in reversed(self._jobs.values()) if kind is None or j.kind == kind]
            return [j.as_json() for j in jobs]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job has finished (for tests and scripts); its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status["state"] in FINISHED:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(0.02)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a queued or running job; its status. A running job shows `cancel_requested` until it has
        stopped and rolled back, then state "cancelled". A finished job stays as it is (UserError)."""
        with self._lock:
            job = self._get(job_id)
            if job.state in ("done", "failed"):
                raise UserError(f"job '{job_id}' has already finished ({job.state}); there is nothing to cancel")
            self._cancel(job)
            return job.as_json()

    def stop(self) -> builtins.list[dict[str, Any]]:
        """Refuse new jobs and cancel every queued and running one, without waiting (the server is stopping);
        the jobs this call cancelled (not those cancelled before)."""
        with self._lock:
            self._closed = True
            stopped = [j for j in self._jobs.values() if j.state in ("queued", "running") and not j.cancel_requested]
            for job in stopped:
                self._cancel(job)
            return [j.as_json() for j in stopped]

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> builtins.list[dict[str, Any]]:
        """stop(), then wait for the running jobs to end (up to `timeout` seconds; not at all without `wait`);
        the jobs cancelled."""
        stopped = self.stop()
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for worker in list(self._threads):
                worker.join(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        return stopped

    # --- under the lock

    def _get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise UserError(f"no job '{job_id}'; it may have finished long ago — start it again")
        return job

    def _cancel(self, job: Job) -> None:
        if job.cancel_requested or job.state in FINISHED:
            return
        job.cancel_requested = True
        job.token.cancel()
        if job.state == "queued":  # never starts: the worker skips it
            job.state = "cancelled"
            job.error = CANCELLED
            job.finished_at = dt.datetime.now().replace(microsecond=0)
            return
        threading.Thread(target=self._interrupt_until_done, args=(job,), name="tierwise-cancel", daemon=True).start()

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in FINISHED]
        for key in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[key]

    # --- inside the worker threads

    def _interrupt_until_done(self, job: Job) -> None:
        while True:
            time.sleep(REINTERRUPT_SECONDS)
            with self._lock:
                if job.state in FINISHED:
                    return
            job.token.interrupt()

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._work(*item)

    def _reporter(self, job: Job) -> Progress:
        def progress(stage: str | None, fraction: float | None = None) -> None:
            job.token.check()  # a cancelled job stops at its next step
            with self._lock:
                job.stage = stage
                if fraction is not None:
                    job.progress = min(max(float(fraction), 0.0), 1.0)

        return progress

    def _work(self, job: Job, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            if job.state != "queued":  # cancelled before it started
                return
            job.state = "running"
            job.started_at = dt.datetime.now().replace(microsecond=0)
        result: Any = None
        error: str | None = None
        state = "done"
        try:
            with bound(job.token):
                result = jsonable(fn(*args, **kwargs))
        except Exception as exc:
            state = "failed"
            if job.token.cancelled:  # whatever the interrupt made fail: the job was cancelled
                log.info("job %s (%s) cancelled", job.job_id, job.kind)
                state, error = "cancelled", CANCELLED
            elif isinstance(exc, UserError):
                error = str(exc)
            else:
                memory = out_of_memory(exc)
                if memory is not None:
                    log.warning("job %s (%s) failed: %s", job.job_id, job.kind, memory)
                else:
                    log.exception("job %s (%s) failed", job.job_id, job.kind)
                error = memory or UNEXPECTED
        finally:
            # Before the state says so: "cancelled" means its connections are closed, whatever they held undone.
            job.token.close()
        # Without an error the job finished before a cancel reached it: it is done (and stored).
        self._finish(job, result=result, error=error, state=state)

    def _finish(self, job: Job, *, result: Any, error: str | None, state: str) -> None:
        with self._lock:
            job.finished_at = dt.datetime.now().replace(microsecond=0)
            job.result = result
            job.error = error
            job.state = state
            if state == "done":
                job.progress = 1.0


def _takes_progress(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in parameters
