"""The event class: not stored; its messages deliver changes to the store's objects."""
from .._dsl import cls

EVENT = cls("event", "A change to an object, as delivered by event.from.", fields=[],
            get_all=False, persist=False)
