"""Backends: the pure drivers that talk to the machine (hypervisor, storage, network).

A driver never touches the store, the API, the dispatcher or the services above it
(tests/test_architecture.py): it gets plain values and raises its own typed errors;
xapi_server/services turns records into driver calls and driver errors into XenAPI
errors."""
