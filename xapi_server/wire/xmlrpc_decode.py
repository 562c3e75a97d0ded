"""XML-RPC requests as xapi reads them: the body's encoding, then the <methodCall>.

defusedxml parses: no DTDs, no entity expansion, so billion-laughs and external
entities are refused before anything is built. xmlrpc.py re-exports decode_call."""
from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from ..datamodel.types import parse_datetime
from . import (InvalidValue, MalformedRequest, UnsupportedEncoding, decode_text,
               first_invalid_string, non_finite)

MAX_DEPTH = 64  # nesting of arrays/structs we accept in a request

# The encodings xapi's XML parser (xmlm) reads; any spelling Python knows for them is
# accepted (UTF-8, utf8, UTF_8, latin1 ...). Another declared encoding is refused with a
# fault rather than guessed at.
_READABLE = {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "iso8859-1", "ascii"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_DECLARED_ENCODING = re.compile(
    rb"[ \t\r\n]*<\?xml\b[^>]*?\bencoding[ \t\r\n]*=[ \t\r\n]*([\"'])(.*?)\1")


@dataclass
class XmlCall:
    method: str
    params: list
    invalid: InvalidValue | None = None


def body_codec(body: bytes) -> str:
    """The Python codec of an XML body: its byte-order mark, else its declaration,
    else UTF-8 (XML's default)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec
    declared = _DECLARED_ENCODING.match(body, 0, 512)
    if declared is None:
        return "utf-8"
    name = declared.group(2).decode("latin-1")
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        codec = None
    if codec not in _READABLE:
        raise UnsupportedEncoding(name[:100])
    return codec


def decode_call(body: bytes) -> XmlCall:
    """The <methodCall> in `body`, or MalformedRequest (or UnsupportedEncoding)."""
    text, had_invalid_bytes = decode_text(body, body_codec(body))
    try:
        # Parsing text, not bytes: expat then ignores the declared encoding.
        root = safe_et.fromstring(text.lstrip("\ufeff"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MalformedRequest(f"forbidden XML construct: {type(exc).__name__}") from None
    except Exception as exc:  # expat errors: not well-formed ...
        raise MalformedRequest(f"XML parse error: {exc}") from None
    if root.tag != "methodCall":
        raise MalformedRequest("expected <methodCall>")
    name = root.find("methodName")
    if name is None or not (name.text or "").strip():
        raise MalformedRequest("missing <methodName>")
    params, problems = [], []
    container = root.find("params")
    if container is not None:
        for param in container.findall("param"):
            value = param.find("value")
            if value is None:
                raise MalformedRequest("<param> without <value>")
            params.append(_decode_value(value, 0, problems))
    if had_invalid_bytes:
        problems.insert(0, first_invalid_string(params, True))
    invalid = next(filter(None, problems), None)
    return XmlCall(name.text.strip(), params, invalid)


def _decode_value(node, depth, problems: list):
    """One <value>; a non-finite <double> is decoded but noted in `problems`."""
    if depth > MAX_DEPTH:
        raise MalformedRequest("values nested too deeply")
    children = list(node)
    if not children:
        return node.text or ""
    if len(children) != 1:
        raise MalformedRequest("<value> with more than one child")
    child = children[0]
    tag, text = child.tag, child.text or ""
    try:
        if tag == "string":
            return text
        if tag in ("int", "i4", "i8"):
            return int(text.strip())
        if tag == "boolean":
            if text.strip() not in ("0", "1"):
                raise ValueError(text)
            return text.strip() == "1"
        if tag == "double":
            number = float(text.strip())
            if bad := non_finite(number):
                problems.append(bad)
            return number
        if tag == "dateTime.iso8601":
            return parse_datetime(text)
        if tag == "nil":
            return None
        if tag == "base64":
            return text
    except Exception:
        raise MalformedRequest(f"bad <{tag}> value") from None
    if tag == "array":
        data = child.find("data")
        if data is None:
            raise MalformedRequest("<array> without <data>")
        return [_decode_value(v, depth + 1, problems) for v in data.findall("value")]
    if tag == "struct":
        result = {}
        for member in child.findall("member"):
            key, value = member.find("name"), member.find("value")
            if key is None or value is None:
                raise MalformedRequest("<member> needs <name> and <value>")
            result[key.text or ""] = _decode_value(value, depth + 1, problems)
        return result
    raise MalformedRequest(f"unknown value type <{tag}>")
