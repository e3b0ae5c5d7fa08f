"""Analysis next to the slides: models run tile by tile on Dask, results with provenance.

>>> from slidestore import analysis, open_slide
>>> result = analysis.run("tissue", open_slide("CMU-1.svs"))
>>> result.summary["tissue_fraction"]

Models are plugins in the ``slidestore.models`` entry-point group (``models()`` lists
them); the contract is in ``slidestore.analysis.model``. The engine needs the
``analysis`` extra (dask distributed, pyarrow, scikit-image).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slidestore.analysis import models
from slidestore.analysis.errors import (
    AnalysisError,
    BadParams,
    SlideUnsuitable,
    TileFailed,
    UnknownModel,
)
from slidestore.analysis.model import (
    InputSpec,
    Model,
    Reduced,
    SlideContext,
    TileContext,
    TileOutput,
)
from slidestore.analysis.registry import get_model, params_schema

if TYPE_CHECKING:
    from slidestore.analysis.engine import run
    from slidestore.analysis.result import AnalysisResult

__all__ = [
    "AnalysisError",
    "AnalysisResult",
    "BadParams",
    "InputSpec",
    "Model",
    "Reduced",
    "SlideContext",
    "SlideUnsuitable",
    "TileContext",
    "TileFailed",
    "TileOutput",
    "UnknownModel",
    "get_model",
    "models",
    "params_schema",
    "run",
]


def __getattr__(name: str) -> Any:
    # The engine (dask, pyarrow) loads only when a run is asked for; a model module
    # importing the contract above pulls in nothing heavy.
    if name == "run":
        from slidestore.analysis.engine import run

        return run
    if name == "AnalysisResult":
        from slidestore.analysis.result import AnalysisResult

        return AnalysisResult
    raise AttributeError(f"module 'slidestore.analysis' has no attribute {name!r}")
