"""The package layout's rules that import-linter cannot see (docs/architecture.md, "Where new code goes")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "tierwise"


def in_function_imports(source: str) -> list[tuple[int, str, bool]]:
    """(line, statement, marked) for every import inside a function; marked: `# lazy` on its line, or in the comments
    and imports right above it."""
    lines = source.split("\n")
    found: dict[int, tuple[int, str, bool]] = {}  # by line: a nested function's imports are walked twice
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    here, i = lines[node.lineno - 1], node.lineno - 2
                    while (
                        i >= 0 and lines[i].strip().startswith(("#", "import ", "from ")) and "# lazy" not in lines[i]
                    ):
                        i -= 1  # up through the comments and imports right above
                    marked = "# lazy" in here or (i >= 0 and "# lazy" in lines[i])
                    found[node.lineno] = (node.lineno, here.strip(), marked)
    return sorted(found.values())


def test_the_checker_sees_marked_and_unmarked_imports() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    import json\n"
        "    # lazy: pyspark takes 3 s to import,\n"
        "    # and only Spark runs need it\n"
        "    import pyspark\n"
        "    import sklearn  # lazy: 1 s\n"
        "    def g():\n"
        "        from x import y\n"
        "class C:\n"
        "    def m(self):\n"
        "        import re\n"
    )
    assert [(line, marked) for line, _, marked in in_function_imports(source)] == [
        (3, False),
        (6, True),
        (7, True),
        (9, False),
        (12, False),
    ]


def test_imports_inside_functions_only_load_heavy_dependencies_lazily_and_say_so() -> None:
    unmarked = [
        f"{path.relative_to(PACKAGE)}:{line}: {text}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, text, marked in in_function_imports(path.read_text(encoding="utf-8"))
        if not marked
    ]
    assert unmarked == [], "move these to the top of their module, or mark a lazy load with '# lazy: why':\n" + (
        "\n".join(unmarked)
    )


def test_importing_the_package_stays_light() -> None:
    # `tierwise.Workspace` is loaded on first use: the command line and every core module import the package first.
    code = "import sys, tierwise, tierwise.errors; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for heavy in ("ibis", "duckdb", "pandas", "sklearn", "pyspark"):
        assert f"'{heavy}'" not in loaded
