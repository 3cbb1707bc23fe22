"""``to_dict`` / ``from_dict`` shared by the config dataclasses (stdlib only: every layer may import it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

_C = TypeVar("_C", bound="DictConfigMixin")


class DictConfigMixin:
    """JSON round trip of a config dataclass: ``type(c).from_dict(c.to_dict()) == c``."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of the fields (round-trips through :meth:`from_dict`)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them and the valid fields."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.from_dict: unknown key(s) {unknown}; valid keys are {sorted(known)}."
            )
        return cls(**dict(data))
