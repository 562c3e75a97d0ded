"""VMs as the hypervisor driver sees them: the domain XML built from a VM record."""
