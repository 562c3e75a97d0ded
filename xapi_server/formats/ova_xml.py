"""ova.xml, the metadata member of an XVA: one XML-RPC <value> as xapi writes it.

    text = dumps(header)            # header = {"version": {...}, "objects": [...]}
    header = loads(data)            # bytes of the member, at most MAX_OVA_XML

Written as ocaml-rpc prints values (the wire codec's compact form: no XML declaration,
strings and ints as bare <value>text</value>). Read leniently (a declaration, <string>,
<int>, <i4>, whitespace between tags) but safely: defusedxml refuses DTDs and entities,
so billion-laughs and external entities never expand; nesting and size are bounded.
Scalars come back as the file has them (ints are strings, as ocaml-rpc prints them);
the importer converts each field with its datamodel type.
"""
from __future__ import annotations

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from ..wire.xmlrpc import encode_value
from .xva_chunks import MAX_OVA_XML, XvaError

MAX_DEPTH = 32


class BadMetadata(XvaError):
    """ova.xml is not the XML-RPC value an XVA needs; str() says why."""


def dumps(header: dict) -> bytes:
    return encode_value(header).encode()


def loads(data: bytes) -> dict:
    if len(data) > MAX_OVA_XML:
        raise BadMetadata(f"ova.xml is {len(data)} bytes, more than {MAX_OVA_XML}")
    try:
        root = safe_et.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise BadMetadata(f"ova.xml uses a forbidden XML construct "
                          f"({type(exc).__name__})") from None
    except Exception as exc:    # not well-formed, bad encoding ...
        raise BadMetadata(f"ova.xml is not well-formed XML: {exc}") from None
    if root.tag != "value":
        raise BadMetadata(f"ova.xml holds <{root.tag}>, not an XML-RPC <value>")
    header = _value(root, 0)
    if not isinstance(header, dict) or not isinstance(header.get("objects"), list):
        raise BadMetadata("ova.xml has no objects array")
    if not isinstance(header.get("version", {}), dict):
        raise BadMetadata("ova.xml's version is not a struct")
    return header


def _value(node, depth: int):
    if depth > MAX_DEPTH:
        raise BadMetadata("ova.xml nests values too deeply")
    children = list(node)
    if not children:
        return node.text or ""
    if len(children) != 1:
        raise BadMetadata("an ova.xml <value> holds more than one element")
    child = children[0]
    tag, text = child.tag, (child.text or "")
    if tag in ("string", "int", "i4", "i8", "dateTime.iso8601", "base64"):
        return text
    if tag == "boolean":
        if text.strip() not in ("0", "1"):
            raise BadMetadata(f"bad boolean {text[:20]!r} in ova.xml")
        return text.strip() == "1"
    if tag == "double":
        try:
            return float(text)
        except ValueError:
            raise BadMetadata(f"bad double {text[:20]!r} in ova.xml") from None
    if tag == "nil":
        return None
    if tag == "array":
        data = child.find("data")
        if data is None:
            raise BadMetadata("an ova.xml <array> has no <data>")
        return [_value(v, depth + 1) for v in data.findall("value")]
    if tag == "struct":
        result = {}
        for member in child.findall("member"):
            name, value = member.find("name"), member.find("value")
            if name is None or value is None:
                raise BadMetadata("an ova.xml <member> needs <name> and <value>")
            result[name.text or ""] = _value(value, depth + 1)
        return result
    raise BadMetadata(f"unknown value type <{tag}> in ova.xml")
