"""schemas/ is generated from the datamodel and must not go stale."""
import json
import os

from xapi_server import schemas
from xapi_server.datamodel import CLASSES, METHODS


def test_schemas_directory_is_current():
    stale = schemas.stale()
    assert not stale, f"run `python -m xapi_server.schemas`; stale: {stale}"


def test_every_class_and_method_is_described():
    names = {n[:-5] for n in os.listdir(schemas.SCHEMA_DIR) if n != "openrpc.json"}
    assert {c for c, d in CLASSES.items() if d.fields} == names
    with open(os.path.join(schemas.SCHEMA_DIR, "openrpc.json")) as f:
        doc = json.load(f)
    assert {m["name"] for m in doc["methods"]} == set(METHODS)
    vm = json.load(open(os.path.join(schemas.SCHEMA_DIR, "VM.json")))
    assert vm["properties"]["power_state"]["enum"] == ["Halted", "Paused", "Running", "Suspended"]


def test_every_declared_custom_message_has_behaviour():
    from xapi_server import api  # noqa: F401  registers implementations
    from xapi_server.dispatch.registry import IMPLEMENTATIONS
    missing = [name for name, m in METHODS.items()
               if m.kind == "custom" and name not in IMPLEMENTATIONS]
    assert not missing, f"declared without an implementation: {missing}"
