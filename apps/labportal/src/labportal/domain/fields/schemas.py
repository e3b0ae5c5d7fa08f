"""Field definitions as a team admin writes them, and what the API answers."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from labportal.domain import validation

Target = Literal["case", "material"]
FieldType = Literal["string", "int", "number", "date", "enum", "bool"]
FieldName = Annotated[str, Meta(pattern="^[a-z][a-z0-9_]{0,39}$")]
Choice = Annotated[str, Meta(min_length=1, max_length=100)]


class FieldDef(msgspec.Struct, forbid_unknown_fields=True):
    name: FieldName
    """The key in ``fields`` and in ``?field.<name>=`` filters."""
    type: FieldType
    label: Annotated[str, Meta(max_length=100)] = ""
    required: bool = False
    choices: Annotated[list[Choice], Meta(max_length=200)] = msgspec.field(default_factory=list)
    """The allowed values of an ``enum`` (and only of an enum)."""
    unit: Annotated[str, Meta(max_length=20)] = ""

    def __post_init__(self) -> None:
        self.label = validation.line(self.label, "label") if self.label.strip() else self.name
        self.unit = validation.text(self.unit, "unit").strip()
        if self.type == "enum":
            if not self.choices:
                raise ValueError(f"field {self.name}: an enum needs choices")
            self.choices = list(dict.fromkeys(validation.line(c, "choice") for c in self.choices))
        elif self.choices:
            raise ValueError(f"field {self.name}: only an enum has choices")


class FieldSchemaIn(msgspec.Struct):
    fields: Annotated[list[FieldDef], Meta(max_length=50)]

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError("field names must be unique")


class FieldSchemaOut(msgspec.Struct):
    team_id: uuid.UUID
    target: Target
    version: int
    """0: nothing defined yet."""
    fields: list[FieldDef]
    created_at: datetime.datetime | None
