"""Values checked at run time against a definition: a msgspec Struct built from it."""

from __future__ import annotations

import datetime
import functools
import json
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from labportal.domain.fields.schemas import FieldDef

Values = dict[str, Any]
_TYPES: dict[str, Any] = {
    "string": Annotated[str, Meta(max_length=1000)],
    "int": Annotated[int, Meta(ge=-(2**53), le=2**53)],
    "number": Annotated[float, Meta(ge=-1e300, le=1e300)],
    "date": datetime.date,
    "bool": bool,
}


def _type(field: FieldDef) -> Any:
    if field.type == "enum":
        return Literal[tuple(field.choices)]
    return _TYPES[field.type]


@functools.lru_cache(maxsize=256)
def _struct(definition: str) -> type[msgspec.Struct]:
    fields = msgspec.json.decode(definition, type=list[FieldDef])
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        (f.name, _type(f)) if f.required else (f.name, _type(f) | None, None) for f in fields
    ]
    return msgspec.defstruct("Fields", spec, kw_only=True, forbid_unknown_fields=True)


def validate(fields: list[FieldDef], values: Values) -> Values:
    """``values`` checked and normalised (dates as ISO strings, absent optionals dropped);
    ``msgspec.ValidationError`` names the field that is wrong."""
    key = json.dumps(msgspec.to_builtins(fields), sort_keys=True)
    struct = _struct(key)
    checked = msgspec.convert(values, struct)
    out = msgspec.to_builtins(checked)
    return {k: v for k, v in out.items() if v is not None}
