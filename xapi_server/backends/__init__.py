"""Backends: the code that talks to the machine (hypervisor, storage, network).

API implementations reach them through the Server (e.g. `server.hypervisor`)."""
