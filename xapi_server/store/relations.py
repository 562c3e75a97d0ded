"""The many sides of the datamodel's one-to-many relations (a network's VIFs, a VM's
children, VBDs ...): never stored, kept by the store in its records as the children
change, filled from the children when records are loaded.

A record is never changed in place once anyone may have read it (datamodel Row): an
owner gets a new Row at every change of its list, and an event, as xapi tells a change
at the other end of a reference. The list itself is changed in place when no reader
can see it (see Relations._relink): creating the 10,000th VIF of a network copies no
list of 10,000 refs."""
from __future__ import annotations

from sys import getrefcount

from ..datamodel import CLASSES, RELATIONS
from ..datamodel.types import Row

# sys.getrefcount, in _relink, of an owner Row only its table holds (the table, the
# local name, the argument) and of a list only that Row holds (likewise).
_ROW_ONLY_IN_TABLE = 3
_LIST_ONLY_IN_ROW = 3


class Relations:
    def __init__(self, tables: dict[str, dict[str, dict]], bump):
        """`tables`: the store's; `bump(class, ref)`: marks an owner changed."""
        self.tables, self._bump = tables, bump
        self.derived = {c: [f.name for f in CLASSES[c].fields if f.derived_from]
                        for c in CLASSES}
        # child class -> [(its field naming the owner, owner class, owner's list field)]
        self._by_child: dict[str, list[tuple[str, str, str]]] = {}
        for (owner, many), (child, ref_field) in RELATIONS.items():
            if owner in CLASSES and child in CLASSES:
                self._by_child.setdefault(child, []).append((ref_field, owner, many))

    def follow(self, cname: str, ref: str, old: dict | None, new: dict | None):
        """A record went from `old` to `new` (None: absent): move it between the lists
        of the owners its fields name."""
        for ref_field, owner_cls, many in self._by_child.get(cname, ()):
            before = old.get(ref_field) if old else None
            after = new.get(ref_field) if new else None
            if before != after:
                self._relink(owner_cls, before, many, ref, add=False)
                self._relink(owner_cls, after, many, ref, add=True)

    def _relink(self, owner_cls, owner_ref, many, child_ref, add):
        """Add or drop `child_ref` in the owner's `many` list, the owner in a new Row.

        The list is changed in place when nothing but the old Row holds it and nothing
        but the table holds that Row: then no reader can see the change. A Row or list
        someone still holds (an encoding cache, an event memo, the undo log, a caller)
        is copied first, once: the next change finds the copy unshared again. Every
        child is in its owner's list exactly once (this keeps that), so adding needs no
        membership test."""
        table = self.tables[owner_cls]
        owner = table.get(owner_ref) if owner_ref else None
        if owner is None:
            return
        refs = owner[many]
        if getrefcount(owner) > _ROW_ONLY_IN_TABLE or getrefcount(refs) > _LIST_ONLY_IN_ROW:
            refs = list(refs)
        if add:
            refs.append(child_ref)
        else:
            try:
                refs.remove(child_ref)
            except ValueError:
                return
        table[owner_ref] = Row(owner, **{many: refs})
        self._bump(owner_cls, owner_ref)

    def fill_owner(self, cname: str, ref: str):
        """A new owner with a given ref: collect the children that already name it.
        Changes the brand-new record in place: nobody can have read it yet."""
        record = self.tables[cname][ref]
        for f in CLASSES[cname].fields:
            if f.derived_from:
                child_cls, ref_field = f.derived_from
                record[f.name] = [r for r, rec in self.tables[child_cls].items()
                                  if rec.get(ref_field) == ref]

    def fill_all(self):
        """Every list from the children, in one pass over each child table (records
        just loaded, their lists empty and read by nobody yet)."""
        for child_cls, links in self._by_child.items():
            for ref_field, owner_cls, many in links:
                owners = self.tables[owner_cls]
                for child_ref, child in self.tables[child_cls].items():
                    owner_ref = child.get(ref_field)
                    if type(owner_ref) is str:
                        owner = owners.get(owner_ref)
                        if owner is not None:
                            owner[many].append(child_ref)

    def for_undo(self, cname: str, old: dict | None, new: dict | None):
        """What the undo log keeps of an updated record: its fields without its lists.
        Those follow its children (undoing a child puts it back), and an old Row held
        there would share its lists with the new one, so _relink would copy them at
        every change of a child until the commit."""
        derived = self.derived[cname]
        if old is None or new is None or not derived:
            return old
        kept = Row(old)
        for name in derived:
            del kept[name]
        return kept

    def undone(self, cname: str, old: dict | None, current: dict | None):
        """(the record to put back for undo entry `old`, whether its lists must be
        found from the children once it is back): an update's entry gets the current
        lists, or empty ones to fill if the record is gone."""
        derived = self.derived[cname]
        if old is None or not derived or derived[0] in old:
            return old, False
        lists = {name: current[name] if current is not None else [] for name in derived}
        return Row(old, **lists), current is None
