"""The package's source, parsed once, for the structure tests (test_architecture.py,
test_layers.py): nothing is imported or run."""
from __future__ import annotations

import ast
import functools
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "xapi_server"


@functools.cache
def _parsed() -> tuple:
    return tuple((path, ast.parse(path.read_text(), filename=str(path)))
                 for path in sorted(PACKAGE.rglob("*.py")))


def _modules():
    return _parsed()


def _where(path, node) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
