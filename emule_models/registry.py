"""The one registry idiom for everything a spec or a config picks by name.

Attention variants, fusions, built-in datasets, image views, selection strategies, augmentation policies, and in
the search platform samplers, schedulers and baselines are each a ``Registry``: a plain dict from name to entry,
filled by a decorator that refuses a name given twice, whose ``lookup`` refuses an unknown name with an error
naming the field, the value and every accepted name. Entries are registered where they are defined and imported
explicitly (no directory scanning), and tests are parametrized over the registry, so a new entry is tested the day
it is added. An entry that carries more than itself (a dataset's description, a strategy's needs) is a small
dataclass added with ``add`` by a decorator of its module (``@builtin``, ``@selection_strategy``).

It imports nothing of the project, so every layer (the models and the search platform) may use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """Name -> entry, filled once at import by ``register``.

    Args:
        kind: what an entry is, for the duplicate error (``"attention"``, ``"dataset"``).
        field: the spec or config field that names an entry, for the unknown-name error (``"data.name"``).
        unknown: how the unknown-name error says the name is refused.
        sort: whether ``names()`` lists the names sorted (the default) or in the order they were registered, for
            names with an order of their own (augmentation policies from none to strong).
    """

    def __init__(self, kind: str, field: str | None = None, unknown: str = "not accepted", sort: bool = True):
        super().__init__()
        self.kind = kind
        self.field = field or kind
        self.unknown = unknown
        self.sort = sort

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator adding the decorated object under ``name`` (default: its ``name`` attribute)."""

        def wrap(entry: T) -> T:
            key = name if name is not None else getattr(entry, "name", None)
            if not key:
                raise TypeError(f"{entry!r} has no 'name'; accepted: register('<name>') or a 'name' attribute")
            return self.add(key, entry)

        return wrap

    def add(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name``; a name given twice is refused."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice{_both(self[name], entry)}")
        self[name] = entry
        return entry

    def lookup(self, name: Any) -> T:
        """The entry named ``name``; an unknown name raises ``ValueError`` naming the field and the accepted names."""
        try:
            return self[name]
        except (KeyError, TypeError):  # TypeError: an unhashable value, e.g. a list where a name belongs
            raise ValueError(self.unknown_name(name)) from None

    def unknown_name(self, name: Any) -> str:
        """The error for a name that is not registered, e.g. ``fusion: 'mid' not accepted; accepted: [...]``."""
        return f"{self.field}: {name!r} {self.unknown}; accepted: {self.names()}"

    def names(self) -> list[str]:
        """Every registered name, sorted unless the registry keeps the order of registration."""
        return sorted(self) if self.sort else list(self)


def _both(old: Any, new: Any) -> str:
    """`` (OldClass, NewClass)`` when both entries are classes or functions: which two definitions clash."""
    names = [getattr(e, "__qualname__", None) for e in (old, new)]
    return f" ({names[0]}, {names[1]})" if all(names) else ""
