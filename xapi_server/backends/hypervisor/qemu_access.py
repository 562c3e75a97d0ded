"""Can the hypervisor's QEMU user reach the files a domain names?

Under qemu:///system QEMU runs as an unprivileged user (libvirt-qemu on Debian).
libvirt chowns disk images, ISOs, kernels and initrds to that user while a guest
runs (dynamic_ownership), but it cannot open them unless it may search (x) every
folder above them: a data dir under /root or a mkdtemp folder (0700) made the first
VM with a disk fail with libvirt's "Cannot access storage file ... Permission denied".

So before libvirt sees a domain (VM.start, hotplug, CD change) or an SR is created,
every folder above each file is checked *as that user* (a tiny child process running
with its uid and groups: the kernel answers, ACLs and all). A blocking folder either
gets an ACL entry giving that user alone search permission, as virt-install does
(setting qemu_search_fix = "acl", the default), or the call fails naming the folder
and the fix ("refuse": services/vm/reachable.py turns that into the XenAPI error).
Who the user is comes from libvirt itself (the DAC base label
in its capabilities); a root QEMU (the embedded driver) needs nothing, nor does a driver
without `needs_qemu_access_check` (the test driver).
"""
from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import subprocess
import xml.etree.ElementTree as ET

log = logging.getLogger(__name__)

# One child checks every folder; `[ -x ]` is answered by the kernel for the child's ids.
_PROBE = 'for d; do [ -x "$d" ] || printf "%s\\0" "$d"; done'


async def qemu_identity(hv) -> tuple[int, int] | None:
    """(uid, gid) QEMU runs as, or None when it runs as root or there is no QEMU."""
    if not hv.capabilities.needs_qemu_access_check or not hv.uri:
        return None
    key, known = (hv.uri, hv.domain_type), hv.qemu_identities
    if key not in known:
        try:
            caps = await hv.conn.call(lambda conn: conn.getCapabilities())
        except Exception:    # libvirt unreachable: the start itself will say so
            return None
        known[key] = _dac_label(caps, hv.domain_type)
    return known[key]


def _dac_label(caps_xml: str, domain_type: str) -> tuple[int, int] | None:
    for model in ET.fromstring(caps_xml).iter("secmodel"):
        if model.findtext("model") != "dac":
            continue
        for label in model.iter("baselabel"):
            if label.get("type") == domain_type:
                uid, _, gid = (label.text or "").replace("+", "").partition(":")
                if uid.isdigit() and gid.isdigit() and int(uid) != 0:
                    return int(uid), int(gid)
    return None


def folders_above(path: str) -> list[str]:
    """Every real folder QEMU passes through to open `path` (symlinks followed),
    shallowest first."""
    found = set()
    prefix = os.path.dirname(os.path.abspath(path))
    while True:
        real = os.path.realpath(prefix)
        while real not in found:
            found.add(real)
            real = os.path.dirname(real)
        if prefix == "/":
            break
        prefix = os.path.dirname(prefix)
    return sorted(found, key=lambda d: (d.rstrip("/").count("/"), d))


async def blocking_folders(paths: list[str], uid: int, gid: int) -> list[str]:
    """The folders that stop `uid` from reaching `paths`: those it may not search
    although it may reach them (the shallowest of each blocked chain)."""
    folders = sorted({d for p in paths for d in folders_above(p)},
                     key=lambda d: (d.rstrip("/").count("/"), d))
    try:
        name = pwd.getpwuid(uid).pw_name
        groups = os.getgrouplist(name, gid)
    except KeyError:
        groups = [gid]
    # subprocess, not the event loop's: only it can start the child with other ids.
    done = await asyncio.to_thread(
        subprocess.run, ["/bin/sh", "-c", _PROBE, "sh", *folders], user=uid, group=gid,
        extra_groups=groups, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, timeout=30)
    denied = {d for d in done.stdout.decode(errors="surrogateescape").split("\0") if d}
    return [d for d in folders if d in denied and (d == "/" or os.path.dirname(d) not in denied)]


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


async def _grant_search(folders: list[str], uid: int) -> None:
    if not shutil.which("setfacl"):
        return
    for folder in folders:
        proc = await asyncio.create_subprocess_exec(
            "setfacl", "-m", f"u:{uid}:x", folder, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode == 0:
            log.warning("gave %s (QEMU's user) search permission on %s (an ACL entry) so "
                        "guests can open the files below it", _user(uid), folder)
        else:
            log.warning("setfacl on %s failed: %s", folder, err.decode(errors="replace"))


def explain(folder: str, uid: int, what: str) -> str:
    user = _user(uid)
    return (f"{user} (uid {uid}), the user QEMU runs as, may not search the folder "
            f"{folder}, so it cannot open {what}. Fix: setfacl -m u:{user}:x {folder} "
            f"(or chmod o+x {folder}), or keep {what} elsewhere.")


async def unreachable(settings, hv, paths: list[str]) -> tuple[str, int] | None:
    """None if QEMU's user reaches every path (after granting search permission where
    the settings allow); else (first blocking folder, uid)."""
    ids = await qemu_identity(hv)
    if ids is None or not paths:
        return None
    uid, gid = ids
    blocked = await blocking_folders(paths, uid, gid)
    # Only the shallowest folder of a blocked chain shows at first (nothing below it
    # can be tested): grant, look again, until nothing new turns up.
    granted: set[str] = set()
    while blocked and settings.qemu_search_fix == "acl" and not granted.issuperset(blocked):
        await _grant_search([d for d in blocked if d not in granted], uid)
        granted.update(blocked)
        blocked = await blocking_folders(paths, uid, gid)
    return (blocked[0], uid) if blocked else None


def files_in_domain(xml: str) -> dict[str, str]:
    """{path: what} for every host file QEMU opens itself: disk/CD images, kernel,
    initrd. (Consoles are opened by libvirt; block devices live in /dev.)"""
    root = ET.fromstring(xml)
    found = {}
    for disk in root.iter("disk"):
        source = disk.find("source")
        if source is not None and source.get("file"):
            found[source.get("file")] = "disk"
    for tag in ("kernel", "initrd"):
        for el in root.iter(tag):
            if el.text:
                found[el.text] = tag
    return found

