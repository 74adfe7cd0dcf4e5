"""The `tierwise` command line (Typer + Rich). Errors are one line on stderr and a non-zero exit code.

`app` is put together here from one module per command group (tierwise/cli/<group>.py, each adding its commands
with `register(app)`); what they share is in tierwise.cli.common, the link to a running `tierwise serve` in
tierwise.cli.remote.

Start-up: every command line is parsed with the whole command tree (to print help, and to find the workspace of
a command that `tierwise serve` runs instead, tierwise.cli.remote), so each start imports every command module.
Those import Typer, Rich and light tierwise modules at the top; the modules that load the data stack are imported
inside the command that uses them, marked "lazy: see tierwise.cli". Measured (-X importtime, 7 December, a busy
machine): importing tierwise.cli takes 0.22 s (tierwise.access loads the engine only when it opens a database);
the modules the commands use would add 1.0 s more at the top (the pipeline with pandas and scikit-learn, the web
layer), to `--help`, to a command forwarded to a server, and to each of the hundreds of CLI processes of the test
suite, which now load only what their own command needs.
"""

from __future__ import annotations

import sys

import typer

from tierwise.cli import (
    batches,
    campaigns,
    clv,
    export,
    generate,
    history,
    ingest,
    init,
    mining,
    refresh,
    run,
    show,
    strategy,
    web,
)
from tierwise.cli.common import add_wait_option, handle_errors
from tierwise.cli.remote import forward

__all__ = ["app", "handle_errors", "main"]

app = typer.Typer(
    name="tierwise",
    help="Customer classification and prioritisation (客户分类与优先排序).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# In the order `tierwise --help` lists them (the groups clv, campaign and user after the commands).
for _group in (
    init,
    ingest,
    run,
    refresh,
    show,
    clv,
    mining,
    export,
    generate,
    batches,
    strategy,
    history,
    campaigns,
    web,
):
    _group.register(app)
add_wait_option(app)  # --wait SECONDS on every command that opens a workspace (tierwise.cli.common)


def main() -> None:
    def invoke() -> None:
        forward(app, sys.argv[1:])  # exits with the command's code when a `tierwise serve` holds the workspace
        # Without standalone mode Click returns the code of a `typer.Exit(n)` instead of exiting with it.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)

    handle_errors(invoke)


if __name__ == "__main__":  # the file run as a script: spark-submit takes a file (docs/spark.md)
    main()
