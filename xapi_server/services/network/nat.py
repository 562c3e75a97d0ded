"""The host-internal NAT network (setting `nat_network`, e.g. "10.213.0.1/24"): guests
on it get an address by DHCP at once and reach whatever the host reaches, as on
libvirt's "default" network. Beyond xapi, which leaves guest networking to the admin.

At first start the network record is made ("Host internal NAT network", other_config
`xapi-py:nat` = the subnet) and chosen as the pool's network for new VIFs when nothing
else is configured (`xe vm-install` of a template without VIFs, VM import without a
matching network). At every start its bridge gets the host address, forwarding and
masquerading are set, and dnsmasq serves DHCP and DNS on the bridge alone, restarted
if it dies. Leases become the guests' addresses: VM_guest_metrics.networks
(`<device>/ip`, `<device>/ipv4/0`), as xapi shows what its guest agent reports.
"""
from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timezone

from ...backends.network import nat
from ...backends.network.contract import NetworkError

log = logging.getLogger(__name__)

NAT_KEY = "xapi-py:nat"
NAME = "Host internal NAT network"
BRIDGE = "xapinat0"
POLL = 2.0          # seconds between looks at dnsmasq and its leases
NULL = "OpaqueRef:NULL"


def find_network(store) -> str | None:
    for ref, rec in store.tables["network"].items():
        if NAT_KEY in rec["other_config"]:
            return ref
    return None


def ensure_record(store, cidr: str) -> str:
    ref = find_network(store)
    if ref is None:
        ref = store.create("network", {
            "name_label": NAME, "bridge": BRIDGE, "managed": True, "MTU": 1500,
            "name_description": f"Guests get addresses in {cidr} by DHCP and reach the "
                                "outside through the host (NAT)",
            "other_config": {NAT_KEY: cidr}})
    elif store.get("network", ref, "other_config").get(NAT_KEY) != cidr:
        store.update("network", ref, other_config={
            **store.get("network", ref, "other_config"), NAT_KEY: cidr})
    return ref


class NatNetwork:
    """The NAT network of one host: its bridge, rules, dnsmasq and the leases."""

    def __init__(self, server, net_runtime):
        self.server, self.net = server, net_runtime
        self.cidr = server.settings.nat_network
        self.state_dir = os.path.join(server.settings.data_dir, "run", "nat")
        self.network: str | None = None
        self.plan: nat.NatPlan | None = None
        self.dnsmasq = None
        self._reserved: dict[str, str] | None = None   # what dnsmasq was last given
        self._task: asyncio.Task | None = None

    @property
    def store(self):
        return self.server.store

    async def start(self):
        self.network = ensure_record(self.store, self.cidr)
        self.plan = nat.NatPlan.from_cidr(self.store.get("network", self.network, "bridge"),
                                          self.cidr)
        try:
            await self._set_up()
        except (NetworkError, OSError) as exc:   # the API stays up without it
            log.warning("NAT network %s not set up: %s", self.cidr, exc)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def _set_up(self):
        name, _ = await self.net.ensure_bridge(self.network)
        await self.net.ip.set_ipv4(name, self.plan.address, self.plan.prefix)
        await self.net.ip.set_up(name)
        nat.enable_forwarding()
        await nat.apply_masquerade(self.plan)
        await self._start_dnsmasq()

    def reservations(self) -> dict[str, str]:
        """MAC -> address of the VIFs on this network configured Static (VIF.configure_ipv4)."""
        found = {}
        for vif in self.store.tables["VIF"].values():
            if vif["network"] == self.network and vif["ipv4_configuration_mode"] == "Static" \
                    and vif["ipv4_addresses"] and vif["MAC"]:
                found[vif["MAC"].lower()] = vif["ipv4_addresses"][0].split("/")[0]
        return found

    async def apply_reservations(self):
        """dnsmasq hands each reserved MAC its address from now on (at the guest's next
        DHCP request): it is started again with them (the leases are kept in its
        file). Also from the watch loop: a destroyed VIF's reservation goes."""
        if self.reservations() == self._reserved or self.dnsmasq is None:
            return
        await self._stop_dnsmasq()
        await self._start_dnsmasq()

    def reservable(self, address: str) -> bool:
        return self.plan is not None and nat.in_pool(self.plan, address)

    async def _start_dnsmasq(self):
        self._reserved = self.reservations()
        self.dnsmasq = await nat.start_dnsmasq(self.plan, self.state_dir, self._reserved)
        asyncio.get_running_loop().create_task(self._drain(self.dnsmasq))

    @staticmethod
    async def _drain(proc):
        """dnsmasq's messages go to our log (a full pipe would stop it)."""
        while line := await proc.stderr.readline():
            log.info("dnsmasq: %s", line.decode(errors="replace").rstrip())

    async def stop(self):
        if self._task:
            self._task.cancel()
        await self._stop_dnsmasq()

    async def _stop_dnsmasq(self):
        if self.dnsmasq is not None and self.dnsmasq.returncode is None:
            self.dnsmasq.terminate()
            try:
                await asyncio.wait_for(self.dnsmasq.wait(), 5)
            except asyncio.TimeoutError:
                self.dnsmasq.kill()
                await self.dnsmasq.wait()

    async def _watch(self):
        while True:
            await asyncio.sleep(POLL)
            try:
                if self.dnsmasq is None or self.dnsmasq.returncode is not None:
                    await self._set_up()      # first start failed, or dnsmasq died
                await self.apply_reservations()
                self.publish_leases(nat.read_leases(self.state_dir))
                await self.store.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("NAT network: %s", exc)

    def publish_leases(self, leases: dict[str, str]):
        """Each running VM with a VIF on this network whose MAC holds a lease shows
        that address in its guest metrics."""
        store = self.store
        per_vm: dict[str, dict] = {}
        for ref, vif in store.tables["VIF"].items():
            if vif["network"] != self.network or not store.exists("VM", vif["VM"]):
                continue
            address = leases.get(vif["MAC"].lower())
            if address and store.get("VM", vif["VM"], "power_state") == "Running":
                per_vm.setdefault(vif["VM"], {}).update(
                    {f"{vif['device']}/ip": address, f"{vif['device']}/ipv4/0": address})
        for vm, networks in per_vm.items():
            _set_guest_networks(store, vm, networks)


def _set_guest_networks(store, vm: str, networks: dict):
    metrics = store.get("VM", vm, "guest_metrics")
    now = datetime.now(timezone.utc)
    if metrics == NULL or not store.exists("VM_guest_metrics", metrics):
        metrics = store.create("VM_guest_metrics", {
            "networks": networks, "live": True, "last_updated": now, "os_version": {},
            "PV_drivers_version": {}, "PV_drivers_up_to_date": False, "other": {}})
        store.update("VM", vm, guest_metrics=metrics)
        return
    current = store.get("VM_guest_metrics", metrics, "networks")
    merged = {**{k: v for k, v in current.items()
                 if k.split("/")[0] not in {n.split("/")[0] for n in networks}}, **networks}
    if merged != current:
        store.update("VM_guest_metrics", metrics, networks=merged, last_updated=now)
