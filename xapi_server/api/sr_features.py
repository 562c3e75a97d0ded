"""SR.make (xapi deprecated it for SR.create: MESSAGE_DEPRECATED) and SR.probe_ext,
SR.probe's findings as probe_result records: the configuration probed, whether it is
complete, and each SR found there (sr_stat: uuid, names and space when this server
knows the SR, health)."""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import service
from ..services.storage.service import errors


@implements("SR.make")
def make(ctx, host, device_config, physical_size, name_label, name_description, sr_type,
         content_type, sm_config):
    ctx.store.record("host", host)
    raise ApiError("MESSAGE_DEPRECATED")


def _sr_stat(store, uuid: str) -> dict:
    stat = {"uuid": uuid, "name_label": "", "name_description": "", "free_space": 0,
            "total_space": 0, "clustered": False, "health": "healthy"}
    try:
        rec = store.record("SR", store.by_uuid("SR", uuid))
    except ApiError:
        return stat   # on the device, not (yet) introduced here
    stat.update(name_label=rec["name_label"], name_description=rec["name_description"],
                total_space=rec["physical_size"], clustered=rec["clustered"],
                free_space=max(rec["physical_size"] - rec["physical_utilisation"], 0))
    return stat


@implements("SR.probe_ext")
async def probe_ext(ctx, host, device_config, sr_type, sm_config):
    ctx.store.record("host", host)
    cls = service.driver_class(sr_type)
    with errors():
        found = await cls.probe(dict(device_config))
    try:
        uuids = [node.text.strip() for node in ElementTree.fromstring(found).iter("UUID")
                 if node.text]
    except ElementTree.ParseError as exc:
        raise ApiError("SR_BACKEND_FAILURE", "EINVAL", "", f"probe answer: {exc}") from None
    configuration = dict(device_config)
    if not uuids:
        return [{"configuration": configuration, "complete": True, "extra_info": {}}]
    return [{"configuration": configuration, "complete": True,
             "sr": _sr_stat(ctx.store, uuid), "extra_info": {}} for uuid in uuids]
