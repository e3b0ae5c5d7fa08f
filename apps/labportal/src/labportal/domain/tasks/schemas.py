"""The task API's wire shapes (shared with the pages: keep to the contract)."""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from labportal.domain import validation

Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
ModelName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][\w.\-]*$")]
ModelVersion = Annotated[str, Meta(min_length=1, max_length=50, pattern=r"^[\w.\-+]+$")]


class InputOut(msgspec.Struct):
    target_mpp: float | None
    level: int | None
    tile_size: int
    overlap: int


class ModelOut(msgspec.Struct):
    name: str
    version: str
    description: str
    kind: Literal["builtin", "onnx"]
    team_id: uuid.UUID | None
    sha256: str | None
    params_schema: dict[str, Any]
    input: InputOut
    outputs: list[str]


class ModelList(msgspec.Struct):
    items: list[ModelOut]


class Normalisation(msgspec.Struct, forbid_unknown_fields=True):
    mean: Annotated[list[float], Meta(min_length=3, max_length=3)]
    std: Annotated[list[Annotated[float, Meta(gt=0)]], Meta(min_length=3, max_length=3)]


class ManifestIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a team admin says about an ONNX patch classifier they register."""

    name: ModelName
    version: ModelVersion
    patch_size: Annotated[int, Meta(ge=8, le=4096)]
    target_mpp: Annotated[float, Meta(gt=0, le=1000)] | None
    normalisation: Normalisation
    class_names: Annotated[
        list[Annotated[str, Meta(min_length=1, max_length=100)]], Meta(min_length=1, max_length=256)
    ]
    description: Annotated[str, Meta(max_length=2000)] = ""
    input_name: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    """The graph input the patches go to (default: the graph's only input)."""
    output: Literal["logits", "probabilities"] = "logits"

    def __post_init__(self) -> None:
        self.description = validation.text(self.description, "description")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError("class_names must be distinct")


class TaskIn(msgspec.Struct, forbid_unknown_fields=True):
    model: ModelName
    material_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None
    model_version: ModelVersion | None = None
    params: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.material_id is None) == (self.case_id is None):
            raise ValueError("give exactly one of material_id and case_id")


class Progress(msgspec.Struct):
    done: int
    planned: int


class TaskOut(msgspec.Struct):
    id: uuid.UUID
    team_id: uuid.UUID
    case_id: uuid.UUID
    material_id: uuid.UUID
    model: str
    model_version: str
    model_sha256: str | None
    params: dict[str, Any]
    status: Status
    progress: Progress
    error: str | None
    created_by: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None


class TaskList(msgspec.Struct):
    items: list[TaskOut]


class TaskPage(msgspec.Struct):
    items: list[TaskOut]
    total: int
    limit: int
    offset: int


class TaskInputOut(msgspec.Struct):
    material_id: uuid.UUID
    blob_sha256: str
    model: str
    model_version: str
    model_sha256: str | None
    params: dict[str, Any]


class HeatmapOut(msgspec.Struct):
    url: str
    x: float
    y: float
    width: float
    height: float
    """The heatmap's extent in level-0 pixels."""
    classes: list[str]


class TaskResultOut(msgspec.Struct):
    summary: dict[str, Any]
    provenance: dict[str, Any]
    feature_count: int
    heatmap: HeatmapOut | None
