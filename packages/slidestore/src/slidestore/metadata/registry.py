"""Per-vendor metadata mappings and the registry that picks one.

A vendor is one module that subclasses :class:`VendorMapping` and calls
:func:`register`; nothing else needs to change to support a second vendor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import msgspec


class VendorFields(msgspec.Struct, kw_only=True):
    """What a vendor mapping contributes on top of OpenSlide's generic properties."""

    scanner_id: str | None = None
    scanner_model: str | None = None
    acquired_at: str | None = None
    compression: str | None = None
    quality: int | None = None


class VendorMapping(ABC):
    """Turns one vendor's raw properties into :class:`VendorFields`."""

    vendor: str

    @classmethod
    def supported(cls, properties: Mapping[str, str]) -> bool:
        return properties.get("openslide.vendor") == cls.vendor

    @abstractmethod
    def extract(self, properties: Mapping[str, str]) -> VendorFields: ...


_REGISTRY: list[type[VendorMapping]] = []


def register(mapping: type[VendorMapping]) -> type[VendorMapping]:
    _REGISTRY.append(mapping)
    return mapping


def mapping_for(properties: Mapping[str, str]) -> VendorMapping | None:
    for mapping in _REGISTRY:
        if mapping.supported(properties):
            return mapping()
    return None
