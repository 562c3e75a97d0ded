"""JSON-RPC 1.0 and 2.0 as xapi speaks them (one call per body, `id` required)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

from ..datamodel.types import Row, format_datetime
from . import (EncodingCache, InvalidValue, MalformedRequest, clean_text, decode_text,
               first_invalid_string, non_finite)


@dataclass
class JsonCall:
    method: str
    params: list
    id: object
    v2: bool
    invalid: InvalidValue | None = None


# Only a \u escape of U+D800..U+DFFF can put a lone surrogate into a decoded string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_call(body: bytes) -> JsonCall:
    text, had_invalid_bytes = decode_text(body)
    problems: list = []

    def number(literal: str) -> float:          # 1e999 is inf as surely as Infinity
        value = float(literal)
        if bad := non_finite(value):
            problems.append(bad)
        return value
    try:
        request = json.loads(text.lstrip("\ufeff"), parse_float=number, parse_constant=number)
    except RecursionError:
        raise MalformedRequest("JSON nested too deeply") from None
    except ValueError as exc:
        raise MalformedRequest(f"JSON parse error: {exc}") from None
    if not isinstance(request, dict):
        raise MalformedRequest("the request must be a JSON object")
    version = request.get("jsonrpc")
    if version is not None and version != "2.0":
        raise MalformedRequest("Invalid field 'jsonrpc' in request body")
    v2 = version == "2.0"
    method = request.get("method")
    if not isinstance(method, str):
        raise MalformedRequest("Invalid field 'method' in request body")
    call_id = request.get("id")
    if isinstance(call_id, bool) or not isinstance(call_id, (str, int)) or (
            isinstance(call_id, str) and clean_text(call_id) != call_id):
        raise MalformedRequest("Invalid field 'id' in request body")  # we could not echo it
    params = request.get("params", None if v2 else ...)
    if params is ...:
        raise MalformedRequest("Invalid field 'params' in request body")
    if params is None and v2:
        params = []
    elif isinstance(params, dict) and v2:
        params = [params]
    elif not isinstance(params, list):
        raise MalformedRequest("Invalid field 'params' in request body")
    if had_invalid_bytes or _SURROGATE_ESCAPE.search(text):
        problems.insert(0, first_invalid_string(params, had_invalid_bytes))
    invalid = next(filter(None, problems), None)
    # An unknown method is named in the reply, which cannot carry a lone surrogate.
    return JsonCall(clean_text(method), params, call_id, v2, invalid)


def _default(value):
    if isinstance(value, datetime):
        return format_datetime(value)
    return str(value)


# allow_nan=False: strict parsers refuse NaN/Infinity, so a non-finite float (never
# accepted on input) fails the call with INTERNAL_ERROR instead of going out.
_dumps = json.JSONEncoder(default=_default, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode


_records = EncodingCache(_dumps)


def _result_text(value) -> str:
    """JSON of a result; records (get_record, get_all_records) come from the cache."""
    t = type(value)
    if t is Row:
        return _records.get(value)
    if t is dict and value and type(next(iter(value.values()))) is Row:
        return "{" + ",".join(f"{_dumps(k)}:{_result_text(v)}" for k, v in value.items()) + "}"
    return _dumps(value)


def encode_success(call: JsonCall, value) -> bytes:
    if call.v2:
        text = f'{{"jsonrpc":"2.0","result":{_result_text(value)},"id":{_dumps(call.id)}}}'
    else:
        text = f'{{"result":{_result_text(value)},"error":null,"id":{_dumps(call.id)}}}'
    return text.encode()


def encode_failure(call: JsonCall, description: list) -> bytes:
    description = [clean_text(str(d)) for d in description]  # an error always goes out
    if call.v2:
        error = {"code": 1, "message": description[0], "data": list(description[1:])}
        return _dumps({"jsonrpc": "2.0", "error": error, "id": call.id}).encode()
    return _dumps({"result": None, "error": list(description), "id": call.id}).encode()
