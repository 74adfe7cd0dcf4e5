"""tierwise: customer classification and prioritisation (客户分类与优先排序).

For notebooks and scripts (docs/python.md):

    import tierwise

    with tierwise.Workspace.open("shop") as ws:
        ws.run()
        ws.snapshot().to_pandas()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["BatchReport", "ReportSummary", "Run", "RunReport", "Workspace", "__version__"]

if TYPE_CHECKING:
    from tierwise.api import BatchReport, ReportSummary, Run, RunReport, Workspace


def __getattr__(name: str) -> Any:
    if name in __all__:
        # lazy: the public API imports the whole pipeline (2 s); the command line and the core modules import this
        # package first and must not pay for it.
        from tierwise import api

        return getattr(api, name)
    raise AttributeError(f"module 'tierwise' has no attribute {name!r}")
