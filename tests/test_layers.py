"""The layer order, checked on the source (issue 13 item 5): each module imports only its
own layer and those below, no import cycles, no private names across packages."""
from __future__ import annotations

import ast
import functools

import pytest

from source_tree import PACKAGE, _modules, _where

# -- Layers, cycles and private names (issue 13 item 5) -----------------------------------
# The layers, bottom first. A module may import its own layer and those below it, never
# one above (module-level and function-level imports alike; imports only type checkers
# see, under `if TYPE_CHECKING:`, are never executed and do not count). A module belongs
# to the layer of the longest prefix naming it; "xapi_server" alone is the package's
# __init__ (its version).
LAYERS = (
    # plain helpers that know no XenAPI record: settings, text bounds, /proc, PAM/NSS,
    # the HTTP reply helpers and the taken-over connection (cli/handler.py uses both)
    ("utilities", ("xapi_server", "xapi_server._logging", "xapi_server.bounds",
                   "xapi_server.config", "xapi_server.hostinfo", "xapi_server.eventloop",
                   "xapi_server.gcpolicy",
                   "xapi_server.system_accounts", "xapi_server.login_throttle",
                   "xapi_server.http.responses", "xapi_server.http.raw",
                   # byte formats of disks and VM exports (tar, XVA chunks, VHD), no records
                   "xapi_server.formats")),
    # what every layer reads: the datamodel, XenAPI errors, the wire codecs, roles
    ("datamodel", ("xapi_server.datamodel", "xapi_server.errors", "xapi_server.wire",
                   "xapi_server.rbac", "xapi_server.certificates",
                   # XVA metadata: an XML-RPC value, written with the wire codec
                   "xapi_server.formats.ova_xml")),
    # the records and what lives beside them: messages, events, tasks, users and the
    # audit log, rate limits, the served TLS identity
    ("store", ("xapi_server.store", "xapi_server.messages", "xapi_server.events",
               "xapi_server.tasks", "xapi_server.auth", "xapi_server.audit",
               "xapi_server.ratelimit", "xapi_server.http.tls")),
    ("backends", ("xapi_server.backends",)),     # pure drivers
    ("services", ("xapi_server.services",)),     # store-aware, drive the backends
    ("dispatch", ("xapi_server.dispatch",)),
    # class behaviour, and what makes records through it at start-up
    ("api", ("xapi_server.api", "xapi_server.templates", "xapi_server.bootstrap")),
    ("cli", ("xapi_server.cli",)),               # xe, served by http/rpc.py at /cli
    ("http", ("xapi_server.http",)),
    # what puts it all together, and the tools and harnesses that start a Server
    ("server", ("xapi_server.server", "xapi_server.main", "xapi_server.__main__",
                "xapi_server.schemas", "xapi_server.cli.testing")),
)

# Imports inside functions hide cycles; each one left is here with the reason.
FUNCTION_LEVEL_IMPORTS_ALLOWED = {
    # The hypervisor factory imports its driver when called: libvirt's bindings load only
    # when a hypervisor is opened. (Drivers import the package's contract module, not the
    # package, so this is no cycle.)
    ("xapi_server.backends.hypervisor", "xapi_server.backends.hypervisor.libvirt_hv"):
        "libvirt's bindings load only when a hypervisor is opened",
}
# Import cycles among our modules (each a sorted tuple of its modules), with the reason.
CYCLES_ALLOWED: dict = {}


def _module_name(path) -> str:
    parts = ["xapi_server", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _module_names() -> frozenset:
    return frozenset(_module_name(path) for path, _ in _modules())


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "TYPE_CHECKING", "typing.TYPE_CHECKING")


def _imports(tree, in_function=False):
    """(import node, inside a function?) for every import that runs."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, in_function
        if _is_type_checking(child):
            for sub in child.orelse:
                yield from _imports(ast.Module(body=[sub], type_ignores=[]), in_function)
            continue
        yield from _imports(child, in_function or isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def _ours(name: str, modules) -> str | None:
    """The module of ours an import of `name` loads (a name inside a module: that
    module), or None."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _import_targets(importer: str, is_package: bool, node, modules):
    """(module imported, names taken from it) for one import statement."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            target = _ours(alias.name, modules)
            if target:
                yield target, ()
        return
    if node.module == "__future__":
        return
    if node.level:
        base = importer.split(".")
        base = base[:len(base) - node.level + (1 if is_package else 0)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    for alias in node.names:
        target = _ours(f"{module}.{alias.name}", modules)
        if target == f"{module}.{alias.name}":
            yield target, ()                      # `from . import submodule`
        elif target:
            yield target, (alias.name,)


@functools.cache
def _import_edges() -> tuple:
    """(importer, imported, names, inside a function?, where) for every import of one of
    our modules by another."""
    modules = _module_names()
    edges = []
    for path, tree in _modules():
        importer = _module_name(path)
        for node, in_function in _imports(tree):
            for target, names in _import_targets(importer, path.name == "__init__.py",
                                                 node, modules):
                if target != importer:
                    edges.append((importer, target, names, in_function, _where(path, node)))
    return tuple(edges)


def _layer(module: str) -> int:
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix if prefix == "xapi_server" else \
                (module == prefix or module.startswith(prefix + "."))
            if matches and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def _cycles(edges) -> list[tuple]:
    """The strongly connected groups of more than one module (Tarjan)."""
    graph: dict[str, set] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(tuple(sorted(group)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_every_module_has_a_layer():
    assert sorted(m for m in _module_names() if _layer(m) is None) == []


def test_no_upward_imports():
    upward = [f"{where}: {a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
              for a, b, _, _, where in _import_edges() if _layer(b) > _layer(a)]
    assert upward == []


def test_no_import_cycles():
    edges = {(a, b) for a, b, _, _, _ in _import_edges()}
    assert [c for c in _cycles(edges) if c not in CYCLES_ALLOWED] == []


def test_the_allowed_cycles_still_exist():
    """An allowance goes when its cycle does, so none can come back unnoticed."""
    edges = {(a, b) for a, b, _, _, _ in _import_edges()}
    assert sorted(set(CYCLES_ALLOWED) - set(_cycles(edges))) == []


def test_function_level_imports_are_allowed_with_a_reason():
    found = {(a, b): where for a, b, _, inside, where in _import_edges() if inside}
    assert sorted(f"{where}: {a} imports {b}" for (a, b), where in found.items()
                  if (a, b) not in FUNCTION_LEVEL_IMPORTS_ALLOWED) == []
    assert sorted(set(FUNCTION_LEVEL_IMPORTS_ALLOWED) - set(found)) == []


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_names_from_another_package():
    """`from ..x import _name` or `from ..x._inner import y` across top-level packages
    reaches into x's inside."""
    found = [f"{where}: {a} imports {b}.{name}"
             for a, b, names, _, where in _import_edges() for name in names
             if _private(name) and _package(a) != _package(b)]
    found += [f"{where}: {a} imports the private module {b}"
              for a, b, _, _, where in _import_edges()
              if _package(a) != _package(b) and any(map(_private, b.split(".")[2:]))]
    assert found == []


@pytest.mark.parametrize("edges, cycles", [
    ({("a", "b"), ("b", "c")}, []),
    ({("a", "b"), ("b", "a")}, [("a", "b")]),
    ({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}, [("a", "b", "c")]),
])
def test_the_cycle_check_finds_what_it_should(edges, cycles):
    assert _cycles(edges) == cycles


@pytest.mark.parametrize("relative, source, expected", [
    ("cli/handler.py", "from ..http.responses import peer", [("xapi_server.http.responses",
                                                              ("peer",), False)]),
    ("cli/handler.py", "def f():\n    from ..http.app import _peer",
     [("xapi_server.http.app", ("_peer",), True)]),
    ("api/vbd.py", "from . import vm_clone", [("xapi_server.api.vm_clone", (), False)]),
    ("api/__init__.py", "from . import vm", [("xapi_server.api.vm", (), False)]),
    ("dispatch/__init__.py", "if TYPE_CHECKING:\n    from ..server import Server", []),
    ("api/vm.py", "import os", []),
])
def test_the_import_reader_finds_what_it_should(relative, source, expected):
    path = PACKAGE / relative
    found = [(target, names, inside) for node, inside in _imports(ast.parse(source))
             for target, names in _import_targets(_module_name(path),
                                                  path.name == "__init__.py", node,
                                                  _module_names())]
    assert found == expected
