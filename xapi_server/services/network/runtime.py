"""The network side of a host (`HostRuntime.net`, services/host.py): the backend, the bridges we own, and
the refresh that keeps PIF, PIF_metrics and VIF records equal to the kernel.

Truth is the kernel: a bridge, VLAN device or tap deleted behind our back shows up
at the next refresh (every POLL_INTERVAL, after PIF.scan, and on reads of a PIF or
VIF record) as currently_attached=false; a missing bridge is made again when a VM
or PIF needs it (xapi also attaches networks on demand).

Bridges we created are listed in the store's meta (`network.owned_bridges`), so
network.destroy deletes those and never a bridge the admin handed us.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import datetime, timezone

from ...backends.network import Link, NetworkError, open_backend
from ...backends.network.hosttools import HostTools
from .names import check_name
from .nat import NatNetwork

log = logging.getLogger(__name__)

POLL_INTERVAL = 3.0
OWNED_KEY = "network.owned_bridges"
NULL = "OpaqueRef:NULL"
MTU_RANGE = (68, 9216)


def tap_name(vif_uuid: str) -> str:
    """The libvirt <target dev> of a VIF: stable, unique, 14 chars ('vnet'/'vif'
    prefixes are libvirt's own and would be ignored)."""
    return "xvif" + vif_uuid.replace("-", "")[:10]


def vlan_device_name(parent: str, tag: int) -> str:
    name = f"{parent}.{tag}"
    if len(name) <= 15:
        return name
    return "xvl" + hashlib.sha1(parent.encode()).hexdigest()[:6] + f".{tag}"


def prefix_to_netmask(prefix: int) -> str:
    bits = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0
    return ".".join(str((bits >> s) & 0xFF) for s in (24, 16, 8, 0))


def now():
    return datetime.now(timezone.utc)


class NetRuntime:
    def __init__(self, server, backend=None):
        self.server = server
        self.ip = backend or open_backend()
        self.tools = HostTools()         # ethtool, ping, sysctl
        self._poller: asyncio.Task | None = None
        self._lock = asyncio.Lock()      # one bridge allocation/creation at a time
        self.nat: NatNetwork | None = None   # setting nat_network (services/network/nat.py)

    @property
    def store(self):
        return self.server.store

    # -- bridges ------------------------------------------------------------------------

    def owned(self) -> set[str]:
        return set(json.loads(self.store.meta.get(OWNED_KEY) or "[]"))

    def _set_owned(self, names: set[str]):
        self.store.set_meta(OWNED_KEY, json.dumps(sorted(names)))

    def bridge_in_use(self, name: str, but: str | None = None) -> bool:
        return any(r["bridge"] == name for ref, r in self.store.tables["network"].items()
                   if ref != but)

    async def allocate_bridge_name(self) -> str:
        links = await self.ip.link_names()
        # One pass over the networks, not one per candidate name: with thousands of
        # networks the quadratic search made every network.create slow.
        taken = set(links) | {r["bridge"] for r in self.store.tables["network"].values()}
        n = 0
        while f"xapi{n}" in taken:
            n += 1
        return f"xapi{n}"

    async def ensure_bridge(self, network: str) -> tuple[str, bool]:
        """The network's bridge exists afterwards; returns (name, made_now)."""
        rec = self.store.record("network", network)
        name = check_name("bridge", rec["bridge"])
        async with self._lock:
            link = await self.ip.link(name)
            if link is not None:
                if link.kind != "bridge":
                    raise NetworkError(f"{name} exists and is not a bridge")
                return name, False
            if not rec["managed"]:
                raise NetworkError(f"bridge {name} of an unmanaged network does not exist")
            await self.ip.bridge_create(name, rec["MTU"] if rec["MTU"] != 1500 else None)
            self._set_owned(self.owned() | {name})
            return name, True

    def mark_owned(self, name: str):
        """A bridge made here by other means (services/network/uplink.py)."""
        self._set_owned(self.owned() | {name})

    async def delete_bridge(self, name: str):
        """Delete a bridge we own (the admin's own bridges are left alone)."""
        if name in self.owned():
            await self.ip.link_delete(name)
            self._set_owned(self.owned() - {name})

    # -- refresh ------------------------------------------------------------------------

    async def refresh(self, links: dict[str, Link] | None = None):
        links = links if links is not None else await self.ip.links()
        for pif in list(self.store.tables["PIF"]):
            rec = self.store.tables["PIF"].get(pif)
            # a pool member's PIFs are its own kernel's, never this host's
            if rec is not None and rec["host"] not in self.server.runtimes:
                continue
            if self.store.exists("PIF", pif):
                await self._refresh_pif(pif, links)
        self.refresh_vifs(links)

    async def refresh_pif(self, pif: str):
        await self._refresh_pif(pif, await self.ip.links())

    async def _refresh_pif(self, pif: str, links: dict[str, Link]):
        store = self.store
        rec = store.record("PIF", pif)
        device = rec["device"] if rec["VLAN"] < 0 else \
            vlan_device_name(rec["device"], rec["VLAN"])
        link = links.get(device)
        bridge = store.get("network", rec["network"], "bridge") \
            if store.exists("network", rec["network"]) else ""
        changes = {}
        if link is None:
            changes["currently_attached"] = False
        else:
            attached = link.up and (rec["management"] or (bool(bridge) and link.master == bridge))
            changes.update(currently_attached=attached, MTU=link.mtu)
            carrier_dev = links.get(link.master) if link.master else link
            changes.update(self._ip_fields(rec, carrier_dev))
            if rec["management"]:    # its route is the host's: read, never written
                changes["gateway"] = await self.ip.gateway(carrier_dev.name)
        changes = {k: v for k, v in changes.items() if rec[k] != v}
        if changes:
            store.update("PIF", pif, **changes)
        await self._refresh_metrics(pif, link)

    def _ip_fields(self, rec, link: Link | None) -> dict:
        if link is None:
            return {}
        v4 = [a for a in link.addresses if a[0] == "inet"]
        v6 = [f"{a[1]}/{a[2]}" for a in link.addresses if a[0] == "inet6"]
        fields = {"IPv6": v6}
        if v4:
            _, addr, prefix, dynamic = v4[0]
            fields.update(IP=addr, netmask=prefix_to_netmask(prefix),
                          ip_configuration_mode="DHCP" if dynamic else "Static")
        else:
            fields.update(IP="", netmask="", ip_configuration_mode="None")
        return fields

    async def _refresh_metrics(self, pif: str, link: Link | None):
        store = self.store
        metrics = store.get("PIF", pif, "metrics")
        info = await self.ip.nic_info(link.name) if link is not None and link.physical else None
        fields = {"carrier": bool(link and link.carrier),
                  "speed": info.speed if info else 0, "duplex": bool(info and info.duplex),
                  "vendor_id": info.vendor_id if info else "",
                  "device_id": info.device_id if info else "",
                  "pci_bus_path": info.pci_bus_path if info else "",
                  "device_name": info.driver if info else ""}
        if metrics == NULL or not store.exists("PIF_metrics", metrics):
            metrics = store.create("PIF_metrics", {**fields, "last_updated": now()})
            store.update("PIF", pif, metrics=metrics)
            return
        old = store.record("PIF_metrics", metrics)
        fields = {k: v for k, v in fields.items() if old[k] != v}
        if fields:
            store.update("PIF_metrics", metrics, **fields, last_updated=now())

    def refresh_vifs(self, links: dict[str, Link]):
        """VIFs of VMs that run on a real hypervisor: attached = the tap exists and is
        a port of the network's bridge. VMs in the middle of an operation are left
        alone (their taps come and go).

        Only a VIF that is attached or whose VM runs can change: a halted VM's VIFs
        are detached already. These are found through the store's indexes, so a poll
        costs the running VMs, not all 10,000 VIFs (held on the event loop each 3 s)."""
        store = self.store
        candidates = dict.fromkeys(store.find("VIF", currently_attached=True))
        for state in ("Running", "Paused"):
            for vm_ref in store.find("VM", power_state=state):
                candidates.update(dict.fromkeys(store.tables["VM"][vm_ref]["VIFs"]))
        for vif in candidates:
            rec = store.tables["VIF"].get(vif)
            if rec is None:
                continue
            vm = store.tables["VM"].get(rec["VM"])
            if vm is None or vm["current_operations"]:
                continue
            host = self.server.host_ref if vm["resident_on"] == NULL else vm["resident_on"]
            if host not in self.server.runtimes:
                continue   # a VM a pool member runs: that member follows its VIFs
            vms = self.server.runtimes[host].vms   # the VM's host's
            taps = vms is not None and vms.hv.capabilities.nics_are_host_taps
            live = vm["power_state"] in ("Running", "Paused")
            if taps:
                tap = links.get(tap_name(rec["uuid"]))
                bridge = store.tables["network"].get(rec["network"], {}).get("bridge")
                attached = live and tap is not None and tap.master == bridge
            else:
                attached = live and rec["currently_attached"]
            if attached != rec["currently_attached"]:
                store.update("VIF", vif, currently_attached=attached)

    # -- life cycle ---------------------------------------------------------------------

    async def start(self):
        try:
            await self.refresh()
        except Exception:
            log.exception("network refresh failed")
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        if self.server.settings.nat_network:
            self.nat = NatNetwork(self.server, self)
            await self.nat.start()

    async def stop(self):
        if self._poller:
            self._poller.cancel()
        if self.nat is not None:
            await self.nat.stop()

    async def _poll(self):
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                await self.refresh()
                await self.store.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("network refresh failed: %s", exc)
