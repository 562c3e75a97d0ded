"""Performance metrics: xapi's data_source record (no objects: messages return it) and
the four data-source messages VM, host and SR each have (datamodel_vm.ml,
datamodel_host.ml, datamodel_sr.ml)."""
from .._dsl import RO, cls, field, msg

DATA_SOURCE = cls(
    "data_source", "A data source sampled into the owner's round-robin archives.",
    stored=False, get_all=False, persist=False,
    fields=[
        field("name_label", "string", RO, doc="The data source's name (cpu0, memory ...)."),
        field("name_description", "string", RO, doc="What it measures."),
        field("enabled", "bool", RO, doc="True when it is being recorded."),
        field("standard", "bool", RO, doc="True when it is recorded without being asked."),
        field("units", "string", RO, doc="The units of its values."),
        field("min", "float", RO, doc="The smallest value it can take."),
        field("max", "float", RO,
              doc="The largest value it can take (the largest double: no bound)."),
        field("value", "float", RO, doc="Its current value."),
    ],
    messages=[],
)


def data_source_messages(owner: str, param: str, record_role: str) -> list:
    """get_data_sources, record_data_source, query_data_source and
    forget_data_source_archives on `owner` (its ref parameter named `param`)."""
    this = f"{owner} ref {param}"
    # The archives are kept by the host that samples the owner: in a pool, that host
    # answers (a member's VM, the member itself, its local SR).
    read = dict(role="read-only", asynchronous=False, mutates=False, forward=param)
    write = dict(role=record_role, asynchronous=False, forward=param)
    return [
        msg("get_data_sources", this, "data_source record set",
            f"The data sources of the {owner}: those sampled now and those archived.",
            **read),
        msg("record_data_source", f"{this}, string data_source",
            doc="Start recording the specified data source.",
            errors=["INTERNAL_ERROR"], **write),
        msg("query_data_source", f"{this}, string data_source", "float",
            "Query the latest value of the specified data source.",
            result_doc="The latest value, averaged over the last 5 seconds.",
            errors=["INTERNAL_ERROR"], **read),
        msg("forget_data_source_archives", f"{this}, string data_source",
            doc="Forget the recorded statistics related to the specified data source.",
            errors=["INTERNAL_ERROR"], **write),
    ]
