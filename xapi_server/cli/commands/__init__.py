"""Hand-written CLI commands, one module per family; importing registers them."""
from . import help, host, task, user  # noqa: F401
