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

import pytest

from source_tree import PACKAGE, _modules, _where

SERVER_MODULE = PACKAGE / "server.py"

# Names ending in `server` that are not our Server (a uvicorn server, say): none today.
NOT_OUR_SERVER: set[str] = set()


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
