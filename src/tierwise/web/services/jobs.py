"""Long work (ingest, run, settings preview) in the background of the server: a small in-process job manager.

`JobManager.start(kind, fn, *args, **kwargs)` queues `fn` on a pool of worker threads (2 by default) and returns
a job id at once; `status(job_id)` tells where it is: state (queued, running, done, failed), stage, progress
(0–1 or None), the times, and the result or an error message. A function that wants to report progress takes
a keyword argument `progress` and calls it as progress(stage, fraction=None); a run reports its stages through
`run_progress(progress)`, which turns them into fractions.

Errors never leak a traceback: a UserError's message is shown as it is (it says what to do); anything else is
logged (logger "tierwise.web.jobs") and shown as "unexpected error; see the server log". Finished jobs are
kept for `keep` jobs (the oldest finished ones are forgotten first). The work runs in other threads: a job
must open or obtain its own workspace (DuckDB connection) there, not use the request's.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tierwise.errors import UserError, out_of_memory
from tierwise.web.services._common import jsonable

log = logging.getLogger("tierwise.web.jobs")

UNEXPECTED = "unexpected error; see the server log"
STATES = ("queued", "running", "done", "failed")
# The stages tierwise.run.run reports through on_stage, in order ("clusters" only when clustering is on).
RUN_STAGES = ("models", "measures", "classes", "clusters", "pareto", "saving")

Progress = Callable[..., None]


def run_progress(progress: Progress, clustering: bool = True) -> Callable[[str], None]:
    """An on_stage callback for tierwise.run.run / run_in_workspace that reports each stage with the share of
    the stages done before it."""
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
            }
        )


class JobManager:
    """Background jobs of one server process (thread-safe)."""

    def __init__(self, workers: int = 2, keep: int = 200) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tierwise-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._keep = keep

    def start(self, kind: str, fn: Callable[..., Any], *args: Any, owner: str | None = None, **kwargs: Any) -> str:
        """Queue fn(*args, **kwargs) and return the job's id. If fn has a `progress` parameter, it gets a
        callable progress(stage, fraction=None) that updates the job's stage and progress."""
        job = Job(job_id=uuid.uuid4().hex, kind=kind, owner=owner)
        with self._lock:
            self._jobs[job.job_id] = job
            self._forget_old()
        if _takes_progress(fn) and "progress" not in kwargs:
            kwargs["progress"] = self._reporter(job)
        self._pool.submit(self._work, job, fn, args, kwargs)
        return job.job_id

    def status(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise UserError(f"no job '{job_id}'; it may have finished long ago — start it again")
            return job.as_json()

    def list(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every job kept, newest first (of one kind when given)."""
        with self._lock:
            jobs = [j for j in reversed(self._jobs.values()) if kind is None or j.kind == kind]
            return [j.as_json() for j in jobs]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job has finished (for tests and scripts); its status."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status["state"] in ("done", "failed"):
                return status
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(0.02)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    # --- inside the worker threads

    def _reporter(self, job: Job) -> Progress:
        def progress(stage: str | None, fraction: float | None = None) -> None:
            with self._lock:
                job.stage = stage
                if fraction is not None:
                    job.progress = min(max(float(fraction), 0.0), 1.0)

        return progress

    def _work(self, job: Job, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        with self._lock:
            job.state = "running"
            job.started_at = dt.datetime.now().replace(microsecond=0)
        try:
            result = jsonable(fn(*args, **kwargs))
        except UserError as exc:
            self._finish(job, error=str(exc))
        except Exception as exc:
            memory = out_of_memory(exc)
            if memory is not None:
                log.warning("job %s (%s) failed: %s", job.job_id, job.kind, memory)
            else:
                log.exception("job %s (%s) failed", job.job_id, job.kind)
            self._finish(job, error=memory or UNEXPECTED)
        else:
            self._finish(job, result=result)

    def _finish(self, job: Job, *, result: Any = None, error: str | None = None) -> None:
        with self._lock:
            job.finished_at = dt.datetime.now().replace(microsecond=0)
            job.result = result
            job.error = error
            job.state = "failed" if error is not None else "done"
            if error is None:
                job.progress = 1.0

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
        for key in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[key]


def _takes_progress(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in parameters
