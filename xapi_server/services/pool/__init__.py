"""Pools of hosts: this host's role (role.py) and the calls hosts make to each other
(peer.py: JSON over TLS, the pool secret, the peer's certificate pinned)."""
