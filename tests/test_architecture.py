"""The structure issue 13 asks for, checked on the source (no server is started).

The Server declares and builds every service in xapi_server/server.py; the rest of
the code only uses them. So nothing outside server.py assigns an attribute on a
server object or looks one up with getattr/hasattr (a service that might be missing
is declared as None until startup and tested with `is None`), and every attribute
the code reads on a server is one the Server declares. Runtime state lives in
objects the Server owns, never in module globals, so two servers in one process
(test_fuzz.py runs one in-process) never share any.
"""
from __future__ import annotations

import ast
import functools
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "xapi_server"
SERVER_MODULE = PACKAGE / "server.py"

# Names ending in `server` that are not our Server (a uvicorn server, say): none today.
NOT_OUR_SERVER: set[str] = set()


@functools.cache
def _parsed() -> tuple:
    return tuple((path, ast.parse(path.read_text(), filename=str(path)))
                 for path in sorted(PACKAGE.rglob("*.py")))


def _modules():
    return _parsed()


def _where(path, node) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def _is_server(expr) -> bool:
    """`server`, `self.server`, `ctx.server`, `app.server` ...: what the code calls
    the Server (names ending in `server`)."""
    if isinstance(expr, ast.Name):
        name = expr.id
    elif isinstance(expr, ast.Attribute):
        name = expr.attr
    else:
        return False
    return name.endswith("server") and name not in NOT_OUR_SERVER


def _targets(node):
    if isinstance(node, ast.Assign):
        yield from node.targets
    elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        yield node.target
    elif isinstance(node, (ast.For, ast.AsyncFor)):
        yield node.target
    elif isinstance(node, (ast.With, ast.AsyncWith)):
        for item in node.items:
            if item.optional_vars is not None:
                yield item.optional_vars
    elif isinstance(node, ast.Delete):
        yield from node.targets


def _flatten(target):
    if isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _flatten(elt)
    elif isinstance(target, ast.Starred):
        yield from _flatten(target.value)
    else:
        yield target


def _call_name(node) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _server_attribute_writes():
    for path, tree in _modules():
        if path == SERVER_MODULE:
            continue
        for node in ast.walk(tree):
            for target in _targets(node):
                for t in _flatten(target):
                    if isinstance(t, ast.Attribute) and _is_server(t.value):
                        yield f"{_where(path, t)}: {ast.unparse(t)}"
            if _call_name(node) in ("setattr", "delattr") and node.args \
                    and _is_server(node.args[0]):
                yield f"{_where(path, node)}: {ast.unparse(node)}"


def _server_lookups():
    for path, tree in _modules():
        for node in ast.walk(tree):
            if _call_name(node) in ("getattr", "hasattr") and node.args \
                    and _is_server(node.args[0]):
                yield f"{_where(path, node)}: {ast.unparse(node)}"


def _declared_by_server() -> set[str]:
    """Attributes Server.__init__ assigns, and the Server's methods and properties."""
    tree = ast.parse(SERVER_MODULE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Server")
    names = set()
    for item in cls.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(item.name)
            if item.name != "__init__":
                continue
            for node in ast.walk(item):
                for target in _targets(node):
                    for t in _flatten(target):
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) \
                                and t.value.id == "self":
                            names.add(t.attr)
    return names


def test_nothing_outside_server_py_attaches_to_the_server():
    assert list(_server_attribute_writes()) == []


def test_no_getattr_or_hasattr_on_the_server():
    assert list(_server_lookups()) == []


def test_every_server_attribute_used_is_declared_in_server_init():
    declared = _declared_by_server()
    undeclared = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_server(node.value) \
                    and node.attr not in declared:
                undeclared.append(f"{_where(path, node)}: {ast.unparse(node)}")
    assert undeclared == []


# What acts on a host belongs to that host (services/host.py, issue 13 item 2).
PER_HOST = ("vms", "net", "storage")


def test_what_acts_on_a_host_is_reached_through_that_host():
    """The hypervisor, the bridges and the storage attach state of a host are reached
    through its runtime (server.runtime(host), runtime_of_vm/sr/network/pif), never as
    one server-wide attribute, so a pool can run several hosts."""
    found = []
    for path, tree in _modules():
        if path == SERVER_MODULE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_server(node.value) \
                    and node.attr in PER_HOST:
                found.append(f"{_where(path, node)}: {ast.unparse(node)}")
    assert found == []


def test_services_made_at_startup_are_declared_none_in_init():
    """The services that need the running loop or libvirt exist as attributes (None)
    before startup, so code can test them with `is None`."""
    declared = _declared_by_server()
    for name in ("runtimes", "certificate_checker", "storage_watcher", "cli_logins"):
        assert name in declared
    # vms, net and storage are a host's (services/host.py HostRuntime), one per host.
    tree = ast.parse((PACKAGE / "services" / "host.py").read_text())
    runtime = next(n for n in tree.body if isinstance(n, ast.ClassDef)
                   and n.name == "HostRuntime")
    init = next(n for n in runtime.body if getattr(n, "name", "") == "__init__")
    per_host = {t.attr for node in ast.walk(init) for target in _targets(node)
                for t in _flatten(target) if isinstance(t, ast.Attribute)}
    for name in PER_HOST:
        assert name in per_host


@pytest.mark.parametrize("source, found", [
    ("server.vms = 1", True),
    ("ctx.server.net = 1", True),
    ("self.server.x, y = 1, 2", True),
    ("setattr(server, 'vms', 1)", True),
    ("self.server = server", False),
    ("server.store.update('VM', ref)", False),
])
def test_the_assignment_check_finds_what_it_should(source, found):
    tree = ast.parse(source)
    hits = [t for node in ast.walk(tree) for target in _targets(node)
            for t in _flatten(target)
            if isinstance(t, ast.Attribute) and _is_server(t.value)]
    hits += [n for n in ast.walk(tree) if _call_name(n) in ("setattr", "delattr")
             and _is_server(n.args[0])]
    assert bool(hits) == found


# Module-level containers that functions may fill, and why that is not runtime state.
# A registry is filled while the modules import (decorators, declarations) and is the
# same for every server; anything else a function changes belongs to an object the
# Server owns. Add a line here only with the reason.
MODULE_STATE_ALLOWED = {
    # registries filled at import
    ("cli/table.py", "COMMANDS"),
    ("datamodel/errors.py", "ERRORS"),
    ("dispatch/registry.py", "IMPLEMENTATIONS"),
    # libvirt's event loop implementation can be registered once per process
    ("backends/hypervisor/libvirt_conn.py", "_loop_thread"),
}
_CONTAINER_CALLS = {"dict", "set", "list", "deque", "defaultdict", "OrderedDict", "Counter",
                    "WeakKeyDictionary", "WeakValueDictionary", "WeakSet"}
_MUTATORS = {"add", "append", "appendleft", "clear", "discard", "extend", "insert", "pop",
             "popitem", "popleft", "remove", "setdefault", "update"}


def _module_containers(tree) -> set[str]:
    names = set()
    for node in tree.body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        value = node.value
        if isinstance(value, ast.Call):
            func = value.func
            called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            mutable = called in _CONTAINER_CALLS
        else:
            mutable = isinstance(value, (ast.Dict, ast.Set, ast.List, ast.DictComp,
                                         ast.SetComp, ast.ListComp))
        if mutable:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def _changed_by_functions(tree, containers: set[str]):
    """Module globals a function rebinds (`global`) or a module container it changes."""
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Global):
                yield from node.names
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id in containers and node.func.attr in _MUTATORS:
                yield node.func.value.id
            for target in _targets(node):
                for t in _flatten(target):
                    if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) \
                            and t.value.id in containers:
                        yield t.value.id


def test_no_runtime_state_in_module_globals():
    found = set()
    for path, tree in _modules():
        module = path.relative_to(PACKAGE).as_posix()
        for name in _changed_by_functions(tree, _module_containers(tree)):
            found.add((module, name))
    assert sorted(found - MODULE_STATE_ALLOWED) == []


# Drivers are pure (issue 13 item 3): backends/ talks to the machine and never to the
# layers above it, so a driver can be used, tested or replaced without a store. Nor
# does a driver speak XenAPI errors (xapi_server.errors): it raises its own typed
# errors and the services translate them.
LAYERS_ABOVE_DRIVERS = ("xapi_server.store", "xapi_server.api", "xapi_server.services",
                        "xapi_server.dispatch", "xapi_server.errors")


def _above_drivers(module: str) -> bool:
    return any(module == layer or module.startswith(layer + ".")
               for layer in LAYERS_ABOVE_DRIVERS)


def _imported_modules(path, tree):
    """Every module an import in `path` names, relative ones resolved (`from . import x`
    names the package and package.x, as x may be a module)."""
    package = ["xapi_server", *path.relative_to(PACKAGE).parent.parts]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield node, module
            for alias in node.names:
                yield node, f"{module}.{alias.name}"


def _upward_imports_from_backends():
    for path, tree in _modules():
        if path.relative_to(PACKAGE).parts[0] != "backends":
            continue
        for node, module in _imported_modules(path, tree):
            if _above_drivers(module):
                yield f"{_where(path, node)}: {module}"


def test_backends_import_nothing_from_the_layers_above():
    assert list(_upward_imports_from_backends()) == []


@pytest.mark.parametrize("relative, source, found", [
    ("backends/storage/x.py", "from ...store import Store", True),
    ("backends/storage/x.py", "from ... import api", True),
    ("backends/storage/x.py", "from ...services.storage import service", True),
    ("backends/storage/x.py", "import xapi_server.dispatch.registry", True),
    ("backends/storage/x.py", "from .. import hypervisor", False),
    ("backends/storage/x.py", "from ...errors import ApiError", True),
    ("backends/storage/x.py", "from .base import Refused", False),
    ("backends/x.py", "from ..store import Store", True),
])
def test_the_upward_import_check_finds_what_it_should(relative, source, found):
    modules = [m for _, m in _imported_modules(PACKAGE / relative, ast.parse(source))]
    assert any(_above_drivers(m) for m in modules) == found


# Drivers declare what their guests do (backends/hypervisor.Capabilities); the code asks
# for a capability, never whether this is the test driver. Only the libvirt driver
# knows that, for libvirt's own quirks.
TEST_DRIVER_NAMES = {"simulated", "_test_driver"}
TEST_DRIVER_KNOWN_BY = "backends/hypervisor/libvirt_hv.py"


def test_the_code_asks_for_capabilities_not_for_the_test_driver():
    found = []
    for path, tree in _modules():
        if path.relative_to(PACKAGE).as_posix() == TEST_DRIVER_KNOWN_BY:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in TEST_DRIVER_NAMES:
                found.append(f"{_where(path, node)}: {ast.unparse(node)}")
            elif isinstance(node, ast.Constant) and node.value in TEST_DRIVER_NAMES:
                found.append(f"{_where(path, node)}: {node.value!r}")   # getattr(hv, ..)
    assert found == []


# -- Layers, cycles and private names (issue 13 item 5) -----------------------------------
# The layers, bottom first. A module may import its own layer and those below it, never
# one above (module-level and function-level imports alike; imports only type checkers
# see, under `if TYPE_CHECKING:`, are never executed and do not count). A module belongs
# to the layer of the longest prefix naming it; "xapi_server" alone is the package's
# __init__ (its version).
LAYERS = (
    # plain helpers that know no XenAPI record: settings, text bounds, /proc, PAM/NSS,
    # the HTTP reply helpers (which cli/handler.py uses too)
    ("utilities", ("xapi_server", "xapi_server._logging", "xapi_server.bounds",
                   "xapi_server.config", "xapi_server.hostinfo", "xapi_server.eventloop",
                   "xapi_server.system_accounts", "xapi_server.login_throttle",
                   "xapi_server.http.responses")),
    # what every layer reads: the datamodel, XenAPI errors, the wire codecs, roles
    ("datamodel", ("xapi_server.datamodel", "xapi_server.errors", "xapi_server.wire",
                   "xapi_server.rbac", "xapi_server.certificates")),
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
