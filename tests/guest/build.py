"""Build the tiny Linux test guest (kernel + busybox initramfs) for libvirt/TCG tests.

Stdlib only; importable as a plain file.  ``build_guest(cache_dir)`` returns
``{"kernel": path, "initrd": path, "version": kver, "cmdline": base_cmdline}``.
The result is cached under ``cache_dir/<kver>-<hash>/``; the hash covers this
file, the kernel image and busybox, so repeated calls are just a few stat()s.
See README.md next to this file for the guest's console protocol.
"""
import glob
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import tempfile

BUSYBOX = "/bin/busybox"  # from Debian's busybox-static (must be statically linked)
# Modules we want (their dependencies are resolved from modules.dep).  Anything
# built into the kernel (=y in /boot/config-*) is simply absent from modules.dep
# and skipped.  Note the Debian cloud kernel has NO AHCI, so CD-ROMs must be on
# IDE (machine type "pc"/i440fx -> ata_piix) or virtio-scsi, not on q35 SATA.
WANTED_MODULES = [
    "button", "evdev",                       # ACPI power button -> /dev/input/event*
    "virtio_pci", "virtio_blk", "virtio_scsi",
    "virtio_net",                            # pulls net_failover, failover
    "virtio_balloon",                        # the host can take memory back
    "ata_piix", "ata_generic", "sd_mod", "sr_mod", "cdrom", "isofs",
]
# Recommended base kernel command line (the domain XML adds guest* params).
# cryptomgr.notests: the kernel's boot-time self-tests of every crypto algorithm
# take ~0.5-0.7 s under TCG (initcall_debug: crypto_algapi_init) and the guest
# uses no crypto the tests care about.
BASE_CMDLINE = "console=ttyS0 quiet cryptomgr.notests"

# The guest's /init (busybox ash).  Every line meant for tests starts with
# "XAPI-TEST-GUEST " and is written to /dev/console (= ttyS0 via console=ttyS0).
INIT_SCRIPT = r"""#!/bin/sh
export PATH=/bin:/sbin
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
dmesg -n 1   # keep kernel messages from interleaving with our marker lines
m() { echo "XAPI-TEST-GUEST $*"; }
for mod in $(cat /lib/modules/order); do
    insmod /lib/modules/$mod.ko 2>/dev/null || m "WARN insmod $mod failed"
done
# Let the kernel poll removable media so CD insert/eject is noticed.
echo 1000 > /sys/module/block/parameters/events_dfl_poll_msecs 2>/dev/null

# ACPI power button: button.ko reports KEY_POWER (116) as an input event.
# struct input_event on x86_64 is 24 bytes: timeval(16) type(2) code(2) value(4);
# we match type=EV_KEY(1) code=0x74 value=1 (press).  fd 3 stays open so no
# event is lost between two reads.
watch_power() {
    exec 3<"$1"
    while :; do
        ev=$(dd bs=24 count=1 <&3 2>/dev/null | od -An -tx1 | tr -d ' \n')
        [ -z "$ev" ] && { sleep 1; continue; }
        case "$ev" in
        *0100740001000000) m POWEROFF; sync; poweroff -f ;;
        esac
    done
}
for d in /dev/input/event*; do [ -e "$d" ] && watch_power "$d" & done

# guestip=A/P configures eth0, guestipN=A/P configures ethN; guestping=IP makes
# the guest ping IP every loop and report state changes.
ip link set lo up
IPS=""; PINGT=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    guestip=*) IPS="$IPS eth0=${arg#guestip=}" ;;
    guestip[0-9]*=*) n=${arg%%=*}; IPS="$IPS eth${n#guestip}=${arg#*=}" ;;
    guestping=*) PINGT="${arg#guestping=}" ;;
    guestdhcp) DHCP=1 ;;
    guestburn) (while :; do :; done) & ;;
    guestcount|guestcount=*) d=${arg#guestcount=}; [ "$d" = guestcount ] && d=0.2
        (i=0; while :; do m COUNT $i; i=$((i+1)); sleep $d; done) & ;;
    guestrecv=*) (while :; do nc -l -p ${arg#guestrecv=} >/dev/null; done) & ;;
    guestread=*) (while :; do dd if=/dev/${arg#guestread=} of=/dev/null bs=64k iflag=direct \
                      2>/dev/null || sleep 1; done) & ;;
    esac
done
configure_net() {
    for spec in $IPS; do
        ifc=${spec%%=*}
        [ -e /sys/class/net/$ifc ] || continue
        [ -e /tmp/configured.$ifc ] && continue
        ip link set $ifc up && ip addr add ${spec#*=} dev $ifc && touch /tmp/configured.$ifc \
            && m "NETCFG $ifc ${spec#*=}"
    done
}
block_list() { ls /sys/block | grep -v -E '^(loop|ram|zram)' | tr '\n' ' '; }
net_list() {
    for i in /sys/class/net/*; do
        n=${i##*/}; [ "$n" = lo ] && continue; echo -n "$n=$(cat $i/address) "
    done
}
media_state() {
    # The first read after a media change fails (unit attention) but makes the
    # kernel revalidate; the second read tells whether media is present.  The
    # ISO9660 volume id lives at bytes 40..71 of sector 16.
    for d in $(ls /sys/block | grep '^sr'); do
        dd if=/dev/$d of=/dev/null bs=2048 count=1 2>/dev/null
        if dd if=/dev/$d of=/tmp/pvd bs=2048 skip=16 count=1 2>/dev/null && [ -s /tmp/pvd ]; then
            lbl=$(dd if=/tmp/pvd bs=1 skip=40 count=32 2>/dev/null | tr -d '\000' | sed 's/ *$//' | tr ' ' '_')
            echo -n "$d,size=$(( $(cat /sys/block/$d/size) * 512 )),label=$lbl "
        else
            echo -n "$d,empty "
        fi
    done
}

# guestshell: an interactive shell on the serial port, for `xe console` tests (what
# is typed there runs as root; the screen of the VGA card is /dev/tty1).
case " $(cat /proc/cmdline) " in
*" guestshell "*) setsid sh -c 'exec sh -i </dev/ttyS0 >/dev/ttyS0 2>&1' & ;;
esac
configure_net
# guestdhcp: eth0 asks DHCP for its address and default route, and says what it got.
if [ -n "$DHCP" ]; then
    printf '%s\n' '#!/bin/sh' \
        'case "$1" in bound|renew)' \
        '  ifconfig $interface $ip netmask $subnet up' \
        '  [ -n "$router" ] && route add default gw ${router%% *} dev $interface' \
        '  echo "XAPI-TEST-GUEST DHCP $interface $ip" >/dev/console ;; esac' > /tmp/dhcp.sh
    chmod +x /tmp/dhcp.sh
    # The NIC's driver may still be probing (booted from a CD it comes later): wait.
    i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    ip link set eth0 up
    (udhcpc -i eth0 -s /tmp/dhcp.sh -t 30 -T 2 -n -q >/dev/null 2>&1 || m DHCP FAIL) &
fi
m BOOTED kernel=$(uname -r)
m CMDLINE $(cat /proc/cmdline)
oblk=-; onet=-; omed=""; oping=""; omem=""
while :; do
    configure_net
    mt=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)
    [ "$mt" != "$omem" ] && { m MEM total_kib=$mt; omem=$mt; }
    b=$(block_list); [ "$b" != "$oblk" ] && { m BLOCK $b; oblk=$b; }
    n=$(net_list); [ "$n" != "$onet" ] && { m NET $n; onet=$n; }
    md=$(media_state); [ "$md" != "$omed" ] && { for e in $md; do m MEDIA $(echo $e | tr , " "); done; omed=$md; }
    if [ -n "$PINGT" ]; then
        if ping -c 1 -W 1 $PINGT >/dev/null 2>&1; then p=OK; else p=FAIL; fi
        [ "$p" != "$oping" ] && { m PING $PINGT $p; oping=$p; }
    fi
    sleep 2
done
"""


def _kernel():
    """Newest /boot/vmlinuz-*-cloud-amd64 -> (path, version)."""
    cands = glob.glob("/boot/vmlinuz-*-cloud-amd64")
    if not cands:
        raise RuntimeError("no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64")
    key = lambda p: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p)]
    path = sorted(cands, key=key)[-1]
    return path, os.path.basename(path)[len("vmlinuz-"):]


def _module_order(kver):
    """Modules (name, path) in load order: dependencies before dependents."""
    moddir = "/lib/modules/%s" % kver
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
    by_name = {re.sub(r"\.ko(\..*)?$", "", os.path.basename(p)).replace("-", "_"): p
               for p in deps}
    order, seen = [], set()

    def visit(path):
        if path in seen:
            return
        seen.add(path)
        for d in deps[path]:
            visit(d)
        order.append(path)

    for name in WANTED_MODULES:
        if name in by_name:          # not in modules.dep -> built in (or absent)
            visit(by_name[name])
    return [(re.sub(r"\.ko(\..*)?$", "", os.path.basename(p)), os.path.join(moddir, p))
            for p in order]


def _read_module(path, kver):
    # busybox insmod cannot decompress, so store plain .ko files.
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    elif path.endswith(".gz"):
        data = gzip.decompress(data)
    elif path.endswith(".zst"):
        raise RuntimeError("zstd-compressed modules are not supported: %s" % path)
    return data if _signatures_required(kver) else _without_signature(data)


SIGNATURE_MAGIC = b"~Module signature appended~\n"


def _signatures_required(kver):
    """Whether the kernel refuses unsigned modules (unknown config: assume it does)."""
    try:
        with open("/boot/config-%s" % kver) as f:
            return "CONFIG_MODULE_SIG_FORCE=y" in f.read().split("\n")
    except OSError:
        return True


def _without_signature(data):
    """The module without its appended signature.  The kernel checks a signature
    when one is there (SHA-512 over the whole module, then RSA: ~0.1 s for libata
    under TCG); an unsigned module only taints the kernel when signatures are not
    forced.  The tail is: signature, struct module_signature (12 bytes, the
    signature's length big-endian in its last 4), the magic string."""
    if not data.endswith(SIGNATURE_MAGIC):
        return data
    info_end = len(data) - len(SIGNATURE_MAGIC)
    sig_len = int.from_bytes(data[info_end - 4:info_end], "big")
    return data[:info_end - 12 - sig_len]


class _Cpio:
    """Minimal writer for the 'newc' cpio format the kernel unpacks."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        # mtime 0 and fixed inode numbers keep the archive reproducible.
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name_b), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08x" % v for v in fields))
        self.buf.write(name_b)
        self.buf.write(b"\0" * (-(110 + len(name_b)) % 4))   # header is 110 bytes
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, perm=0o644):
        self._entry(name, 0o100000 | perm, data)

    def symlink(self, name, target):
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0, nlink=1)
        return self.buf.getvalue()


def _make_initrd(kver):
    c = _Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "mnt", "lib", "lib/modules"):
        c.dir(d)
    # The kernel opens /dev/console for init's stdio *before* init can mount
    # devtmpfs, so the node must exist in the archive (no root needed to add it).
    c.chardev("dev/console", 5, 1)
    with open(BUSYBOX, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", INIT_SCRIPT.encode(), 0o755)
    names = []
    for name, path in _module_order(kver):
        c.file("lib/modules/%s.ko" % name, _read_module(path, kver))
        names.append(name)
    c.file("lib/modules/order", ("\n".join(names) + "\n").encode())
    return gzip.compress(c.finish(), compresslevel=6, mtime=0)


def _cache_key(kernel_path):
    h = hashlib.sha256()
    with open(__file__, "rb") as f:
        h.update(f.read())
    for p in (kernel_path, BUSYBOX):     # cheap identity of the other inputs
        st = os.stat(p)
        h.update(("%s %d %d\n" % (p, st.st_size, int(st.st_mtime))).encode())
    return h.hexdigest()[:16]


def build_guest(cache_dir):
    """Return {"kernel", "initrd", "version", "cmdline"}; builds into cache_dir once.

    Files are world-readable and the directories world-traversable, because with
    qemu:///system the QEMU process runs as libvirt-qemu (Debian /boot/vmlinuz-*
    can be 0600, hence the kernel is copied too).  Safe to call concurrently:
    the cache entry is populated in a temp dir and renamed into place.
    """
    kernel_path, kver = _kernel()
    out = os.path.join(os.path.abspath(cache_dir), "%s-%s" % (kver, _cache_key(kernel_path)))
    result = {"kernel": os.path.join(out, "vmlinuz"), "initrd": os.path.join(out, "initrd.gz"),
              "version": kver, "cmdline": BASE_CMDLINE}
    if os.path.exists(result["initrd"]) and os.path.exists(result["kernel"]):
        return result
    os.makedirs(cache_dir, exist_ok=True)
    os.chmod(cache_dir, os.stat(cache_dir).st_mode | 0o755)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=cache_dir)
    try:
        shutil.copyfile(kernel_path, os.path.join(tmp, "vmlinuz"))
        with open(os.path.join(tmp, "initrd.gz"), "wb") as f:
            f.write(_make_initrd(kver))
        for n in ("vmlinuz", "initrd.gz"):
            os.chmod(os.path.join(tmp, n), 0o644)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, out)
        except OSError:
            if not os.path.exists(result["initrd"]):   # lost a race only if it exists
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(build_guest(sys.argv[1] if len(sys.argv) > 1 else "/tmp/xapi-test-guest"),
                     indent=2))

