"""Applying a :class:`VendorSchema` to a slide's raw properties."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime

import msgspec

from slidestore.metadata.schema_file import (
    FIELD_TYPES,
    MICROMETRES,
    PER_LENGTH,
    FieldRule,
    Source,
    VendorSchema,
)

Value = str | int | float


class VendorFields(msgspec.Struct, kw_only=True):
    """What a vendor schema contributes on top of the reader's geometry."""

    scanner_model: str | None = None
    scanner_id: str | None = None
    software: str | None = None
    objective_power: float | None = None
    mpp_x: float | None = None
    mpp_y: float | None = None
    acquired_at: str | None = None
    compression: str | None = None
    quality: int | None = None
    schema: str | None = None
    """``name@version`` of the schema that produced these."""


def _raw(source: Source, properties: Mapping[str, str]) -> str | None:
    for key, pattern in source.when.items():
        value = properties.get(key)
        if value is None or re.search(pattern, value) is None:
            return None
    if source.join is not None:
        parts = [properties[k].strip() for k in source.join if properties.get(k, "").strip()]
        if not parts or not properties.get(source.join[0], "").strip():
            return None
        text = " ".join(parts)
    else:
        assert source.property is not None
        found = properties.get(source.property)
        if found is None:
            return None
        text = found
    if source.pattern is not None:
        match = re.search(source.pattern, text)
        if match is None:
            return None
        if "value" in match.groupdict():
            text = match.group("value")
        elif match.groups():
            text = match.group(1)
        else:
            text = match.group(0)
    text = text.strip()
    return text or None


def _datetime(text: str, formats: list[str] | None) -> str | None:
    """An ISO 8601 string as precise as the format: a date, or a date-time (with offset)."""
    for fmt in formats or ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]:
        try:
            stamp = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not any(d in fmt for d in ("%H", "%I", "%M", "%S")):
            return stamp.date().isoformat()
        return stamp.isoformat()
    return None


def _number(text: str, kind: str, unit: str | None) -> float | int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    if unit in PER_LENGTH:
        number = PER_LENGTH[unit] / number
    elif unit is not None:
        number *= MICROMETRES[unit]
    if kind == "int":
        return int(number) if number == int(number) else None
    return round(number, 9)


def _convert(text: str, name: str, rule: FieldRule, source: Source) -> Value | None:
    kind = FIELD_TYPES[name]
    if kind in ("float", "int"):
        return _number(text, kind, source.unit)
    if kind == "datetime":
        return _datetime(text, source.formats)
    if rule.transform == "upper":
        return text.upper()
    if rule.transform == "lower":
        return text.lower()
    if rule.transform == "first_line":
        return text.splitlines()[0].strip() or None
    return text


def field_value(name: str, rule: FieldRule, properties: Mapping[str, str]) -> Value | None:
    """The first source's value that converts, else the rule's default."""
    for source in rule.resolved():
        text = _raw(source, properties)
        if text is None:
            continue
        value = _convert(text, name, rule, source)
        if value is not None:
            return value
    if rule.default is None:
        return None
    return _convert(str(rule.default), name, rule, Source(property=name))


def extract(schema: VendorSchema, properties: Mapping[str, str]) -> VendorFields:
    values = {name: field_value(name, rule, properties) for name, rule in schema.fields.items()}
    return msgspec.convert(
        {k: v for k, v in values.items() if v is not None} | {"schema": schema.label},
        VendorFields,
    )
