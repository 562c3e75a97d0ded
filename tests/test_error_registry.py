"""The error registry (xapi_server/datamodel/errors.py) knows every code the server answers.

`ApiError(code, ...)` is not checked at run time; this test reads the source instead: every
code written at an `ApiError(...)` call, in an error description handed to the wire or a
task (`["CODE", ...]`), or passed to a helper that raises the code it is given, must be
registered, with no more parameters than the registry allows. `msg(errors=[...])` is
checked when the datamodel is imported; this test proves that check bites.
"""
import ast
import pathlib

import pytest

import xapi_server
from xapi_server.cli.errors import ERROR_TEXT
from xapi_server.datamodel import METHODS
from xapi_server.datamodel import msg
from xapi_server.datamodel.errors import ERRORS, OURS, XAPI, XAPI_UNDECLARED

PACKAGE = pathlib.Path(xapi_server.__file__).parent

# Calls that take an error description as a list, ["CODE", params...], besides ApiError:
# the XML-RPC failure encoder, the HTTP route's fault and the task that finishes failed.
DESCRIPTION_SINKS = {"encode_failure", "fault", "_finish"}

# Parameter names by which a helper takes the code it raises (`_reject(..., error=...)`).
CODE_PARAMS = {"error", "code"}

# ApiError calls whose code is neither written there nor a helper's code parameter.
FORWARDED = {
    ("cli/commands/vm.py", "run_op"): "re-raises a finished task's error_info as it is",
    ("cli/transfer.py", "track_http_operation"): "re-raises an HTTP transfer task's "
                                                 "error_info as it is",
    ("api/host_plugins.py", "_plugin_result"): "raises a host plugin's own Failure "
                                               "(XenAPIPlugin) as it is, as xapi",
    ("api/vm_url_import.py", "import_"): "re-raises the error_info of the /import task "
                                          "it drove as it is",
    ("api/pool_membership.py", "_join"): "re-raises the coordinator's refusal of a join "
                                          "(pool /pool_internal) as it is, as xapi",
    ("api/pool_membership.py", "call_member"): "re-raises a member's refusal of an internal "
                                                "call as it is",
    ("api/pool_sessions.py", "vouched_session"): "re-raises the coordinator's refusal of "
                                                  "a session as it is",
    ("api/pool_emergency.py", "emergency_reset_master"): "re-raises the coordinator's "
                                                          "refusal of this host as it is",
    ("services/pool/migrate_remote.py", "refusal"): "re-raises another pool's error (a "
                                                     "cross-pool migration) as it is",
}


def _call_name(call: ast.Call):
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def _const_str(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _description(node):
    """("CODE", number of params or None) for a list literal ["CODE", ...], else None."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        code = _const_str(node.elts[0])
        if code is not None:
            has_star = any(isinstance(e, ast.Starred) for e in node.elts)
            return code, None if has_star else len(node.elts) - 1
    return None


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def _code_helpers(modules):
    """name -> (position, parameter name, default code, params it raises with) for every
    function that raises `ApiError(<its code parameter>, ...)`."""
    helpers = {}
    for _, tree in modules:
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            defaults = dict(zip(names[len(names) - len(fn.args.defaults):], fn.args.defaults))
            for call in ast.walk(fn):
                if not (isinstance(call, ast.Call) and _call_name(call) == "ApiError"):
                    continue
                first = call.args[0] if call.args else None
                if isinstance(first, ast.Name) and first.id in CODE_PARAMS and first.id in names:
                    default = _const_str(defaults.get(first.id))
                    helpers[fn.name] = (names.index(first.id), first.id, default,
                                        len(call.args) - 1)
    return helpers


class _Scan(ast.NodeVisitor):
    """Collects (code, number of params or None, where) and the computed-code sites."""

    def __init__(self, helpers):
        self.helpers = helpers
        self.sites, self.dynamic = [], []
        self.rel, self.function = "", None

    def module(self, rel, tree):
        self.rel, self.function = rel, None
        self.visit(tree)

    def visit_FunctionDef(self, node):
        outer, self.function = self.function, node.name
        self.generic_visit(node)
        self.function = outer

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Call(self, node):
        where = f"{self.rel}:{node.lineno}"
        name = _call_name(node)
        if name == "ApiError":
            self._api_error(node, where)
        elif name in DESCRIPTION_SINKS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                found = _description(arg)
                if found:
                    self.sites.append((*found, where))
        if name in self.helpers:
            pos, pname, _, count = self.helpers[name]
            given = node.args[pos] if len(node.args) > pos else next(
                (k.value for k in node.keywords if k.arg == pname), None)
            if _const_str(given) is not None:
                self.sites.append((_const_str(given), count, where))
        self.generic_visit(node)

    def _api_error(self, node, where):
        first = node.args[0] if node.args else None
        if _const_str(first) is not None:
            starred = any(isinstance(a, ast.Starred) for a in node.args)
            self.sites.append((_const_str(first), None if starred else len(node.args) - 1,
                               where))
            return
        helper = self.helpers.get(self.function)
        if helper and isinstance(first, ast.Name) and first.id == helper[1]:
            return      # a helper raising the code it was given: its callers are scanned
        self.dynamic.append((self.rel, self.function))
        for inner in ast.walk(node):    # ApiError(*(x or ["CODE", ...])): the fallback
            found = _description(inner)
            if found:
                self.sites.append((*found, where))


def scan() -> _Scan:
    modules = list(_modules())
    helpers = _code_helpers(modules)
    found = _Scan(helpers)
    for rel, tree in modules:
        found.module(rel, tree)
    for name, (_, _, default, count) in helpers.items():
        if default is not None:
            found.sites.append((default, count, f"default of {name}()"))
    return found


@pytest.fixture(scope="module")
def raised():
    return scan()


def test_every_raised_code_is_registered(raised):
    missing = sorted({f"{code} ({where})" for code, _, where in raised.sites
                      if code not in ERRORS})
    assert not missing, "raised but not in xapi_server/datamodel/errors.py: " + ", ".join(missing)


def test_raised_with_at_most_the_registered_params(raised):
    over = sorted(f"{code} with {n} params at {where} (registry allows "
                  f"{ERRORS[code].max_params}: {', '.join(ERRORS[code].wire_params)})"
                  for code, n, where in raised.sites
                  if code in ERRORS and n is not None and n > ERRORS[code].max_params)
    assert not over, "\n".join(over)


def test_computed_codes_are_known_forwarders(raised):
    unknown = [site for site in raised.dynamic if site not in FORWARDED]
    assert not unknown, ("ApiError with a code this test cannot read; write the code at the "
                         f"call or add the site to FORWARDED: {unknown}")


def test_the_scan_sees_the_server(raised):
    codes = {code for code, _, _ in raised.sites}
    # the scan's own sanity: codes raised in each of its ways
    assert {"HANDLE_INVALID", "VM_BAD_POWER_STATE"} <= codes           # ApiError("...")
    assert {"TASK_CANCELLED", "XMLRPC_UNMARSHAL_FAILURE"} <= codes     # ["CODE", ...]
    assert "SESSION_AUTHENTICATION_FAILED" in codes                    # a helper's default
    assert "RBAC_PERMISSION_DENIED" in codes
    assert len(codes) >= 90


def test_every_message_error_is_registered():
    declared = {code for m in METHODS.values() for code in m.errors}
    assert declared <= set(ERRORS), sorted(declared - set(ERRORS))


def test_msg_refuses_an_unregistered_code():
    with pytest.raises(ValueError, match="NO_SUCH_ERROR.*datamodel/errors.py"):
        msg("start", "VM ref vm", errors=["VM_BAD_POWER_STATE", "NO_SUCH_ERROR"])


def test_xe_texts_name_registered_codes():
    assert set(ERROR_TEXT) <= set(ERRORS)


def test_registry_entries_are_whole(raised):
    for code, err in ERRORS.items():
        assert err.code == code
        assert err.origin in (XAPI, XAPI_UNDECLARED, OURS), code
        assert err.doc and "\n" not in err.doc and len(err.doc) <= 100, code
        assert len(err.wire_params) >= len(err.params), code
    # Nothing registered for nobody: each code is raised, declared by a message or worded
    # by xe.
    used = ({code for code, _, _ in raised.sites} | set(ERROR_TEXT)
            | {code for m in METHODS.values() for code in m.errors})
    assert not set(ERRORS) - used, sorted(set(ERRORS) - used)


def test_counts(raised):
    codes = {code for code, _, _ in raised.sites}
    declared = {code for m in METHODS.values() for code in m.errors}
    ours = sorted(c for c, e in ERRORS.items() if e.origin == OURS)
    print(f"\nerror registry: {len(ERRORS)} codes ({len(ours)} ours: {', '.join(ours)}); "
          f"{len(codes)} raised at {len(raised.sites)} sites; {len(declared)} named by "
          f"msg(errors=); {len(codes - declared)} raised but named by no message")
