"""Generate `schemas/` from the datamodel: a JSON Schema per class (the record as
JSON-RPC carries it) and one OpenRPC document listing every method and every error code.

    python -m xapi_server.schemas            # rewrite schemas/
    python -m xapi_server.schemas --check    # exit 1 if schemas/ is stale
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__
from .datamodel import CLASSES, METHODS, Enum, Map, Prim, Record, Ref, Set
from .datamodel.errors import ERRORS

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas")
_DATETIME = {"type": "string", "pattern": r"^\d{8}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})?$"}


def json_type(t) -> dict:
    if isinstance(t, Prim):
        return {"string": {"type": "string"}, "int": {"type": "integer"},
                "float": {"type": "number"}, "bool": {"type": "boolean"},
                "datetime": dict(_DATETIME), "void": {"const": ""}}[t.name]
    if isinstance(t, Ref):
        return {"type": "string", "pattern": "^OpaqueRef:", "x-xenapi-ref": t.cls}
    if isinstance(t, Enum):
        return {"type": "string", "enum": list(t.values), "x-xenapi-enum": t.name}
    if isinstance(t, Set):
        return {"type": "array", "items": json_type(t.elem)}
    if isinstance(t, Map):
        return {"type": "object", "additionalProperties": json_type(t.value),
                "x-xenapi-key": str(t.key)}
    if isinstance(t, Record):
        return {"$ref": f"{t.cls}.json"}
    raise TypeError(t)


def class_schema(c) -> dict:
    props = {}
    for f in c.fields:
        schema = json_type(f.type)
        schema["x-xenapi-qualifier"] = f.qualifier
        _describe(schema, f.doc)
        if f.has_default:
            schema["default"] = _jsonable(f.default)
        props[f.name] = schema
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{c.name}.json",
            "title": c.name, "description": c.doc, "type": "object", "properties": props,
            "required": [f.name for f in c.fields], "additionalProperties": False}


def _describe(entry: dict, doc: str) -> dict:
    """Add the datamodel's doc as a description; nothing when there is none, so that
    the schemas change only where a doc was written."""
    if doc:
        entry["description"] = doc
    return entry


def _jsonable(value):
    return value if isinstance(value, (str, int, float, bool, list, dict)) else str(value)


def openrpc() -> dict:
    methods = []
    for name in sorted(METHODS):
        m = METHODS[name]
        params = ([{"name": "session_id", "required": True,
                    "schema": json_type(Ref("session"))}] if m.session else [])
        for p in m.params:
            entry = {"name": p.name, "required": p.required, "schema": json_type(p.type)}
            if not p.required:
                entry["schema"]["default"] = _jsonable(p.default)
            _describe(entry, p.doc)
            params.append(entry)
        result = _describe({"name": "result", "schema": json_type(m.result)}, m.result_doc)
        methods.append({"name": name, "summary": m.doc or f"{m.kind} ({m.cls})",
                        "params": params, "result": result,
                        "x-xenapi-roles": m.role, "x-xenapi-async": m.asynchronous,
                        "x-xenapi-errors": list(m.errors)})
    return {"openrpc": "1.3.2",
            "info": {"title": "xapi-py XenAPI", "version": __version__},
            "methods": methods,
            "components": {"schemas": {c: {"$ref": f"{c}.json"} for c in sorted(CLASSES)},
                           "x-xenapi-errors": error_registry()}}


def error_registry() -> dict:
    """Every error code with its parameters. An extension: OpenRPC's own error objects
    carry integer codes, and XenAPI's are strings (JSON-RPC 2.0 always says 1)."""
    out = {}
    for code in sorted(ERRORS):
        err = ERRORS[code]
        entry = {"description": err.doc, "params": list(err.params), "x-xenapi-origin": err.origin}
        if err.sent:
            entry["x-xenapi-sent"] = list(err.sent)
        out[code] = entry
    return out


def render() -> dict[str, str]:
    """File name -> content for everything in schemas/."""
    files = {f"{c.name}.json": class_schema(c) for c in CLASSES.values() if c.fields}
    files["openrpc.json"] = openrpc()
    return {name: json.dumps(doc, indent=1, sort_keys=True) + "\n" for name, doc in files.items()}


def stale(directory: str = SCHEMA_DIR) -> list[str]:
    """Names of files that differ from (or are missing in, or extra in) `directory`."""
    wanted = render()
    have = set(os.listdir(directory)) if os.path.isdir(directory) else set()
    diff = [n for n in sorted(have - set(wanted)) if n.endswith(".json")]
    for name, content in wanted.items():
        path = os.path.join(directory, name)
        if not os.path.exists(path) or open(path).read() != content:
            diff.append(name)
    return diff


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--dir", default=SCHEMA_DIR)
    args = parser.parse_args(argv)
    if args.check:
        diff = stale(args.dir)
        if diff:
            print("schemas/ is stale: " + ", ".join(diff), file=sys.stderr)
            return 1
        return 0
    os.makedirs(args.dir, exist_ok=True)
    wanted = render()
    for name in os.listdir(args.dir):
        if name.endswith(".json") and name not in wanted:
            os.remove(os.path.join(args.dir, name))
    for name, content in wanted.items():
        with open(os.path.join(args.dir, name), "w") as f:
            f.write(content)
    print(f"wrote {len(wanted)} files to {args.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
