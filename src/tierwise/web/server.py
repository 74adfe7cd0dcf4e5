"""`tierwise serve` under uvicorn, and stopping it within seconds on SIGTERM or SIGINT.

Left to itself, uvicorn on a signal stops accepting connections, waits for the requests in flight without a time
limit, then runs the app's shutdown; and the interpreter waits for every non-daemon thread at exit. A settings
preview or a run kept the server up for minutes that way. Here the first signal at once cancels every background
job (its DuckDB query is interrupted, its work rolled back) and interrupts every query of the process, so that
requests in flight answer too. Then uvicorn waits at most GRACE_SECONDS for them, the app's shutdown
(`stop_jobs`) at most JOB_SECONDS for the cancelled jobs to finish rolling back, and should the process still be
there after DEADLINE_SECONDS (something stuck outside DuckDB), it exits hard: what was committed is in the
database or its write-ahead log, and the uncommitted rest is discarded when the file is next opened.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from tierwise import cancel

log = logging.getLogger("tierwise.web")

GRACE_SECONDS = 4  # requests in flight (uvicorn's timeout_graceful_shutdown)
JOB_SECONDS = 3  # cancelled jobs rolling back (the app's shutdown)
DEADLINE_SECONDS = 9.5  # from the signal to a hard exit
REINTERRUPT_SECONDS = 0.5


def run(app: Any, host: str, port: int, on_stop: Callable[[], None] | None = None) -> None:
    """Serve `app` until SIGTERM or SIGINT (a second SIGINT skips the waiting). `on_stop` is called at the first
    signal (the command listener of tierwise.cli.remote stops taking commands: uvicorn ends the process itself after
    a signal, so code after this call may never run)."""

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            first = not self.should_exit
            super().handle_exit(sig, frame)
            if first:  # in the signal handler: the work is done in a thread of its own
                threading.Thread(target=_stopping, args=(app, sig, on_stop), name="tierwise-stop", daemon=True).start()

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=GRACE_SECONDS,
        # uvicorn would otherwise believe X-Forwarded-For from any loopback peer; the app believes it only from
        # [web] trusted_proxies (tierwise.web.auth.client_ip).
        proxy_headers=False,
    )
    Server(config).run()


def stop_jobs(app: Any, wait: float = JOB_SECONDS) -> None:
    """Cancel the app's background jobs, record that in the audit log, and wait up to `wait` seconds for the
    running ones to end (the app's shutdown; the signal handler calls it without waiting)."""
    jobs = getattr(app.state, "jobs", None)
    if jobs is None:
        return
    stopped = jobs.shutdown(timeout=wait) if wait > 0 else jobs.stop()
    for job in stopped:
        log.warning("server stopping: job %s (%s) cancelled", job["job_id"], job["kind"])
        try:
            app.state.accounts.audit(
                None, "job_cancel", f"job={job['job_id']} kind={job['kind']} owner={job['owner']} reason=shutdown"
            )
        except Exception:  # the audit database is gone (the workspace removed): stopping matters more
            log.warning("recording the cancelled job failed", exc_info=True)


def _stopping(app: Any, sig: int, on_stop: Callable[[], None] | None) -> None:
    started = time.monotonic()
    if on_stop is not None:
        try:
            on_stop()
        except Exception:
            log.warning("stopping the command listener failed", exc_info=True)
    stop_jobs(app, wait=0)
    # Requests in flight run queries too; and a job between two queries starts another one: interrupt again.
    while time.monotonic() - started < DEADLINE_SECONDS:
        cancel.interrupt_all()
        time.sleep(REINTERRUPT_SECONDS)
    log.error("the server did not stop within %.0f s of the signal; exiting now", DEADLINE_SECONDS)
    logging.shutdown()
    os._exit(128 + sig)
