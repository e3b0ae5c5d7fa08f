"""The declarative vendor schema: what a ``*.toml`` file under ``metadata/schemas/`` says.

A schema names the vendor, the scanner models and the version of the format it covers,
when it applies (``match``: property → regular expression, all must hold) and, per
normalised field, where the value comes from::

    name = "philips"
    vendor = "philips"
    model = "UFS, IntelliSite"
    version = "1"

    [match]
    "openslide.vendor" = "^philips$"

    [fields.mpp_x]
    sources = [
      "openslide.mpp-x",
      { property = "philips.DICOM_PIXEL_SPACING", pattern = '"[^"]*" "(?P<value>[^"]+)"', unit = "mm" },
    ]

A source is a property name, or a table: ``property`` (or ``join``: several properties,
the present ones joined by a space), ``pattern`` (a regex; the ``value`` group, else the
first group, else the match), ``unit`` (converted to the field's unit: µm for mpp),
``formats`` (``strptime`` formats for dates), ``when`` (property → regex that must hold).
The first source that yields a value wins; ``default`` applies when none does. Keys set
on the field (``pattern``, ``unit``, ``formats``) apply to its plain-string sources.
"""

from __future__ import annotations

import re
from typing import Final, Literal

import msgspec

from slidestore.errors import MetadataSchemaError

FieldName = Literal[
    "scanner_model",
    "scanner_id",
    "software",
    "objective_power",
    "mpp_x",
    "mpp_y",
    "acquired_at",
    "compression",
    "quality",
]
"""The normalised fields a schema may fill (geometry comes from the reader, not a schema)."""

ValueType = Literal["str", "int", "float", "datetime"]
FIELD_TYPES: Final[dict[str, ValueType]] = {
    "scanner_model": "str",
    "scanner_id": "str",
    "software": "str",
    "objective_power": "float",
    "mpp_x": "float",
    "mpp_y": "float",
    "acquired_at": "datetime",
    "compression": "str",
    "quality": "int",
}

MICROMETRES: Final[dict[str, float]] = {
    "nm": 1e-3,
    "um": 1.0,
    "µm": 1.0,
    "mm": 1e3,
    "cm": 1e4,
    "m": 1e6,
}
"""A length in this unit, in micrometres."""
PER_LENGTH: Final[dict[str, float]] = {"px/cm": 1e4, "px/mm": 1e3, "px/inch": 25_400.0}
"""A resolution in this unit gives micrometres per pixel as ``factor / value``."""
UNITS: Final = frozenset(MICROMETRES) | frozenset(PER_LENGTH)
LENGTH_FIELDS: Final = frozenset({"mpp_x", "mpp_y"})
TRANSFORMS: Final = frozenset({"upper", "lower", "strip", "first_line"})


class Source(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    property: str | None = None
    join: list[str] | None = None
    pattern: str | None = None
    unit: str | None = None
    formats: list[str] | None = None
    when: dict[str, str] = msgspec.field(default_factory=dict)


class FieldRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    sources: list[str | Source] = msgspec.field(default_factory=list)
    pattern: str | None = None
    unit: str | None = None
    formats: list[str] | None = None
    transform: str | None = None
    default: str | float | int | None = None

    def resolved(self) -> list[Source]:
        """Every source as a table, the field's keys filled in where a source has none."""
        out = []
        for source in self.sources:
            table = Source(property=source) if isinstance(source, str) else source
            out.append(
                msgspec.structs.replace(
                    table,
                    pattern=table.pattern if table.pattern is not None else self.pattern,
                    unit=table.unit if table.unit is not None else self.unit,
                    formats=table.formats if table.formats is not None else self.formats,
                )
            )
        return out


class VendorSchema(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    vendor: str
    version: str = "1"
    model: str = ""
    """The scanner models (or families) the schema was written for, for people."""
    description: str = ""
    extends: str | None = None
    """Another schema's name: its match and fields, this one's on top."""
    priority: int = 0
    """Among the schemas that match, the highest priority wins (then the most specific)."""
    match: dict[str, str] = msgspec.field(default_factory=dict)
    fields: dict[FieldName, FieldRule] = msgspec.field(default_factory=dict)
    origin: str = ""
    """Where it was loaded from (set by the loader)."""

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


def _check_regex(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise MetadataSchemaError(f"{where}: bad regular expression {pattern!r}: {exc}") from None


def check(schema: VendorSchema) -> VendorSchema:
    """Refuse what decoding cannot: bad regexes, unknown units and transforms, empty rules."""
    where = schema.origin or schema.name
    for key, pattern in schema.match.items():
        _check_regex(pattern, f"{where}: match {key!r}")
    for name, rule in schema.fields.items():
        spot = f"{where}: field {name}"
        if not rule.sources and rule.default is None:
            raise MetadataSchemaError(f"{spot}: needs sources or a default")
        if rule.transform is not None and rule.transform not in TRANSFORMS:
            raise MetadataSchemaError(
                f"{spot}: unknown transform {rule.transform!r} (one of {sorted(TRANSFORMS)})"
            )
        for source in rule.resolved():
            if (source.property is None) == (source.join is None):
                raise MetadataSchemaError(f"{spot}: a source needs exactly one of property, join")
            if source.pattern is not None:
                _check_regex(source.pattern, spot)
            for key, pattern in source.when.items():
                _check_regex(pattern, f"{spot}: when {key!r}")
            if source.unit is not None:
                if source.unit not in UNITS:
                    raise MetadataSchemaError(
                        f"{spot}: unknown unit {source.unit!r} (one of {sorted(UNITS)})"
                    )
                if name not in LENGTH_FIELDS:
                    raise MetadataSchemaError(f"{spot}: only mpp_x/mpp_y take a unit")
    return schema


def decode(data: bytes, origin: str) -> VendorSchema:
    """A schema from TOML bytes, checked; :class:`MetadataSchemaError` says what is wrong."""
    try:
        schema = msgspec.toml.decode(data, type=VendorSchema)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MetadataSchemaError(f"{origin}: {exc}") from None
    return check(msgspec.structs.replace(schema, origin=origin))
