"""The byte formats metrics leave the server in: xapi's rrd_updates (XML and JSON,
rrd_updates.ml `xml_of`, `json_of_t`), its full RRD dumps (rrd.ml `xml_to_output`,
`Json.rrd`) and the Prometheus / OpenMetrics text exposition format.

xapi's JSON writes every number as a string ("step":"5", "values":["0.5","NaN"]): XO
and XO Lite expect that. Numbers are printed as xapi's `f_to_s`: %0.15g, zero as 0.0,
NaN, Infinity, -Infinity.
"""
from __future__ import annotations

import json
import math
import re
from xml.sax.saxutils import escape

from .sources import UNBOUNDED, describe

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


def number(value) -> str:
    # The common case first: a poll of 100 VMs formats ~120 000 of these.
    if value is None or value != value:
        return "NaN"
    if value == 0:
        return "0.0"
    if -UNBOUNDED < value < UNBOUNDED:
        return "%0.15g" % value
    return "Infinity" if value > 0 else "-Infinity"


# -- /rrd_updates -------------------------------------------------------------------------

def updates_xml(u) -> bytes:
    parts = [XML_DECLARATION, "<xport><meta>",
             f"<start>{u.start}</start><step>{u.step}</step><end>{u.end}</end>",
             f"<rows>{len(u.rows)}</rows><columns>{len(u.legend)}</columns><legend>"]
    parts += [f"<entry>{escape(e)}</entry>" for e in u.legend]
    parts.append("</legend></meta><data>")
    for t, values in u.rows:
        parts.append(f"<row><t>{t}</t><v>")
        parts.append("</v><v>".join([number(v) for v in values]))
        parts.append("</v></row>")
    parts.append("</data></xport>")
    return "".join(parts).encode()


def updates_json(u) -> bytes:
    meta = json.dumps({"start": str(u.start), "step": str(u.step), "end": str(u.end),
                       "rows": str(len(u.rows)), "columns": str(len(u.legend)),
                       "legend": u.legend}, separators=(",", ":"))
    # Rows by hand: number() never needs JSON escaping, and joining strings is several
    # times faster than json.dumps over ~120 000 of them.
    rows = ",".join('{"t":"%d","values":%s}' % (t, _strings([number(v) for v in values]))
                    for t, values in u.rows)
    return ('{"meta":%s,"data":[%s]}' % (meta, rows)).encode()


def _strings(texts: list[str]) -> str:
    return '["' + '","'.join(texts) + '"]' if texts else "[]"


# -- /host_rrd, /vm_rrd, /sr_rrd -----------------------------------------------------------

def _sources(archive, info):
    """(name, ds id, SourceInfo) in the file's order."""
    order = sorted(archive.ids.items(), key=lambda item: info[f"ds[{item[1]}].index"])
    return [(name, ds, describe(archive.kind, name)) for name, ds in order]


def _ds_fields(info, ds, meta):
    get = lambda key: info.get(f"ds[{ds}].{key}")
    last = get("last_ds")
    return [("name", None), ("type", get("type")),
            ("minimal_heartbeat", number(get("minimal_heartbeat"))),
            ("min", number(meta.min)), ("max", number(meta.max)),
            ("last_ds", number(_float(last))), ("value", number(get("value"))),
            ("unknown_sec", number(get("unknown_sec")))]


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _rra_parts(archive, info, tables, state, sources):
    """Per archive: (pdp_per_row, xff, cdp_prep [(primary, secondary, value, unknown)],
    rows oldest first)."""
    out = []
    for k, (seconds, rows, names, data) in enumerate(tables):
        column = {n: i for i, n in enumerate(names)}
        prep = []
        for name, ds, _meta in sources:
            index = info[f"ds[{ds}].index"]
            primary, secondary = state[k][index]
            prep.append((primary, secondary, info.get(f"rra[{k}].cdp_prep[{index}].value"),
                         info.get(f"rra[{k}].cdp_prep[{index}].unknown_datapoints", 0)))
        end = archive.last // seconds * seconds
        table = []
        for t in range(end - (rows - 1) * seconds, end + 1, seconds):
            row = data.get(t)
            table.append([row[column[n]] if row is not None and n in column else None
                          for n, _ds, _m in sources])
        out.append((info[f"rra[{k}].pdp_per_row"], info[f"rra[{k}].xff"], prep, table))
    return out


def dump_xml(dumped) -> bytes:
    archive, info, tables, state = dumped
    sources = _sources(archive, info)
    parts = [XML_DECLARATION, "<rrd><version>0003</version>",
             f"<step>{info['step']}</step><lastupdate>{int(archive.last)}</lastupdate>"]
    for name, ds, meta in sources:
        parts.append("<ds>")
        for key, value in _ds_fields(info, ds, meta):
            parts.append(f"<{key}>{escape(name) if key == 'name' else value}</{key}>")
        parts.append("</ds>")
    for pdp, xff, prep, table in _rra_parts(archive, info, tables, state, sources):
        parts.append(f"<rra><cf>AVERAGE</cf><pdp_per_row>{pdp}</pdp_per_row>"
                     f"<params><xff>{number(xff)}</xff></params><cdp_prep>")
        for primary, secondary, value, unknown in prep:
            parts.append(f"<ds><primary_value>{number(primary)}</primary_value>"
                         f"<secondary_value>{number(secondary)}</secondary_value>"
                         f"<value>{number(value)}</value>"
                         f"<unknown_datapoints>{unknown}</unknown_datapoints></ds>")
        parts.append("</cdp_prep><database>")
        for row in table:
            parts.append("<row>" + "".join(f"<v>{number(v)}</v>" for v in row) + "</row>")
        parts.append("</database></rra>")
    parts.append("</rrd>")
    return "".join(parts).encode()


def dump_json(dumped) -> bytes:
    archive, info, tables, state = dumped
    sources = _sources(archive, info)
    doc = {"version": "0003", "step": str(info["step"]), "lastupdate": str(int(archive.last)),
           "ds": [], "rra": []}
    for name, ds, meta in sources:
        entry = {key: (name if key == "name" else value)
                 for key, value in _ds_fields(info, ds, meta)}
        entry["last_updated"] = str(int(archive.last))
        doc["ds"].append(entry)
    for pdp, xff, prep, table in _rra_parts(archive, info, tables, state, sources):
        doc["rra"].append({
            "cf": "AVERAGE", "pdp_per_row": str(pdp), "params": {"xff": number(xff)},
            "cdp_prep": {"ds": [{"primary_value": number(p), "secondary_value": number(s),
                                 "value": number(v), "unknown_datapoints": str(u)}
                                for p, s, v, u in prep]},
            "database": [[number(v) for v in row] for row in table]})
    return json.dumps(doc, separators=(",", ":")).encode()


# -- Prometheus / OpenMetrics --------------------------------------------------------------

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def _help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def prometheus(samples: dict, names: dict, openmetrics: bool) -> bytes:
    """Every value of the last sample as a gauge `xapi_<kind>_<source>` labelled with
    the owner's uuid and name; `samples` {(kind, uuid): {source: value}}, `names`
    {(kind, uuid): name_label}. Families are grouped, as the format requires."""
    families: dict[str, tuple[str, list]] = {}
    for (kind, uuid), values in sorted(samples.items()):
        for source, value in sorted(values.items()):
            if value is None:
                continue
            family = f"xapi_{kind}_{_NOT_NAME.sub('_', source)}"
            info = describe(kind, source)
            units = f" ({info.units})" if info.units else ""
            help_text = f"{info.description}{units}; xapi data source {source}"
            if family not in families:
                families[family] = (help_text, [])
            labels = f'uuid="{_label(uuid)}",name="{_label(names.get((kind, uuid), ""))}"'
            families[family][1].append(f"{family}{{{labels}}} {_sample(value)}")
    lines = []
    for family, (help_text, rows) in families.items():
        lines.append(f"# HELP {family} {_help(help_text)}")
        lines.append(f"# TYPE {family} gauge")
        lines += rows
    if openmetrics:
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode()


def _sample(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
