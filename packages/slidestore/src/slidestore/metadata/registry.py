"""The registry of vendor schemas and the rule that picks one for a slide.

Schemas come from, in order (a later schema with the same ``name`` replaces an earlier one):

1. the files the library ships (``slidestore/metadata/schemas/*.toml``);
2. packages declaring the entry-point group ``slidestore.metadata_schemas`` (each entry
   point loads to a directory: a ``str``/``Path`` or an importlib ``Traversable``);
3. the directories in ``SLIDESTORE_METADATA_SCHEMAS`` (``os.pathsep``-separated), or
   the ``directories`` passed to :meth:`SchemaRegistry.load`.

So a lab adds a scanner model, or corrects a mapping, by dropping a TOML file in a
directory, with no code. For a slide, the schemas whose ``match`` all hold compete: the
highest ``priority``, then the most ``match`` conditions, then the one loaded last.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from importlib.metadata import entry_points
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

import msgspec

from slidestore.errors import MetadataSchemaError
from slidestore.metadata.extract import VendorFields, extract
from slidestore.metadata.schema_file import VendorSchema, check, decode

ENV: Final = "SLIDESTORE_METADATA_SCHEMAS"
ENTRY_POINT_GROUP: Final = "slidestore.metadata_schemas"


def _files(directory: Traversable) -> list[Traversable]:
    if not directory.is_dir():
        raise MetadataSchemaError(f"{directory}: not a directory of metadata schemas")
    return sorted(
        (f for f in directory.iterdir() if f.name.endswith(".toml") and f.is_file()),
        key=lambda f: f.name,
    )


def _merged(schema: VendorSchema, base: VendorSchema) -> VendorSchema:
    return check(
        msgspec.structs.replace(
            schema,
            extends=None,
            match=base.match | schema.match,
            fields=base.fields | schema.fields,
        )
    )


class SchemaRegistry:
    """Named vendor schemas; :meth:`pick` chooses the one for a set of properties."""

    def __init__(self, schemas: Iterable[VendorSchema] = ()) -> None:
        self._schemas: dict[str, VendorSchema] = {}
        for schema in schemas:
            self.add(schema)

    def add(self, schema: VendorSchema) -> None:
        self._schemas.pop(schema.name, None)  # re-adding moves it last (it wins ties)
        self._schemas[schema.name] = schema

    def add_directory(self, directory: Traversable) -> None:
        for file in _files(directory):
            self.add(decode(file.read_bytes(), str(file)))

    @classmethod
    def load(
        cls, directories: Sequence[Path] | None = None, *, entry_points_too: bool = True
    ) -> SchemaRegistry:
        """The shipped schemas, then entry points', then ``directories`` (default: the
        ``SLIDESTORE_METADATA_SCHEMAS`` environment variable's)."""
        registry = cls()
        registry.add_directory(resources.files("slidestore.metadata") / "schemas")
        if entry_points_too:
            for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: p.name):
                target = point.load()
                registry.add_directory(Path(target) if isinstance(target, str | Path) else target)
        if directories is None:
            directories = [Path(p) for p in os.environ.get(ENV, "").split(os.pathsep) if p]
        for directory in directories:
            registry.add_directory(directory)
        return registry

    @property
    def schemas(self) -> list[VendorSchema]:
        """Every schema, ``extends`` resolved, in load order."""
        return [self.resolved(name) for name in self._schemas]

    def resolved(self, name: str, _seen: frozenset[str] = frozenset()) -> VendorSchema:
        schema = self._schemas.get(name)
        if schema is None:
            raise MetadataSchemaError(f"no metadata schema named {name!r}")
        if schema.extends is None:
            return schema
        if schema.extends in _seen | {name}:
            raise MetadataSchemaError(f"{schema.origin}: schemas extend each other in a loop")
        return _merged(schema, self.resolved(schema.extends, _seen | {name}))

    def pick(self, properties: Mapping[str, str]) -> VendorSchema | None:
        best: tuple[int, int, int] | None = None
        chosen = None
        for order, schema in enumerate(self.schemas):
            if not schema.match or not all(
                (value := properties.get(key)) is not None and re.search(pattern, value)
                for key, pattern in schema.match.items()
            ):
                continue
            rank = (schema.priority, len(schema.match), order)
            if best is None or rank > best:
                best, chosen = rank, schema
        return chosen

    def fields(self, properties: Mapping[str, str]) -> VendorFields:
        schema = self.pick(properties)
        return extract(schema, properties) if schema is not None else VendorFields()


_default: SchemaRegistry | None = None
_lock = threading.Lock()


def default_registry() -> SchemaRegistry:
    """The registry :func:`slidestore.metadata.normalize` uses, loaded once."""
    global _default
    with _lock:
        if _default is None:
            _default = SchemaRegistry.load()
        return _default


def reset_default_registry() -> None:
    """Forget the loaded registry (the next use reloads: after changing the environment)."""
    global _default
    with _lock:
        _default = None
