"""Class-specific behaviour, one module per class or family.

Importing this package registers every implementation with the dispatcher.
"""
from . import host, session, task  # noqa: F401
