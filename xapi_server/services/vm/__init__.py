"""VMs as the hypervisor driver sees them: the domain XML built from a VM record, and
the check that QEMU's user can open the files it names."""
