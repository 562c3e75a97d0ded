"""The tiny guest on a BIOS-bootable ISO (isolinux, as distribution media are made), so a
VM boots it from its CD drive through the BIOS as it would an installer: used by the
day-one walk-through (xe) and the web console's New VM wizard.

    from guest.boot_iso import install_iso, missing_tools
"""
import os
import shutil
import subprocess
import tempfile

ISOLINUX = "/usr/lib/ISOLINUX/isolinux.bin"
LDLINUX = "/usr/lib/syslinux/modules/bios/ldlinux.c32"


def missing_tools() -> str | None:
    """Why a bootable ISO cannot be made here, or None."""
    if not shutil.which("genisoimage"):
        return "genisoimage is not installed"
    for path in (ISOLINUX, LDLINUX):
        if not os.path.exists(path):
            return f"{path} is missing (isolinux, syslinux-common)"
    return None


def install_iso(guest: dict, folder, name: str, args: str = "guestdhcp guestshell") -> str:
    """Write `folder/name`: an ISO whose boot loader starts the tiny guest with its
    command line plus `args` (by default: ask DHCP for an address, a shell on the
    serial port). The ISO's file tree is built in a scratch directory, so `folder`
    may be an ISO SR's directory."""
    with tempfile.TemporaryDirectory(prefix="iso-tree-") as scratch:
        tree = os.path.join(scratch, "tree")
        os.makedirs(os.path.join(tree, "isolinux"))
        shutil.copy(ISOLINUX, os.path.join(tree, "isolinux"))
        shutil.copy(LDLINUX, os.path.join(tree, "isolinux"))
        shutil.copy(guest["kernel"], os.path.join(tree, "vmlinuz"))
        shutil.copy(guest["initrd"], os.path.join(tree, "initrd.gz"))
        with open(os.path.join(tree, "isolinux", "isolinux.cfg"), "w") as cfg:
            cfg.write("DEFAULT install\nPROMPT 0\nTIMEOUT 0\nLABEL install\n"
                      f"  KERNEL /vmlinuz\n  APPEND initrd=/initrd.gz {guest['cmdline']} {args}\n")
        out = os.path.join(str(folder), name)
        subprocess.run(["genisoimage", "-quiet", "-o", out, "-b", "isolinux/isolinux.bin",
                        "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4",
                        "-boot-info-table", "-J", "-R", "-V", "TINYGUEST", tree], check=True)
    return out
