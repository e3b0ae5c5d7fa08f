"""Errors of ``slidestore.analysis``; each also inherits the builtin a caller would catch."""

from __future__ import annotations

from slidestore.errors import SlidestoreError


class AnalysisError(SlidestoreError):
    """Base of the analysis errors."""

    code = "analysis_error"


class UnknownModel(AnalysisError, LookupError):
    """No model of that name is registered in the ``slidestore.models`` entry-point group."""

    code = "unknown_model"


class BadParams(AnalysisError, ValueError):
    """Parameters that do not match the model's params schema; ``reason`` is msgspec's."""

    code = "bad_params"

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"bad parameters for model {model!r}: {reason}")
        self.model = model
        self.reason = reason


class SlideUnsuitable(AnalysisError, ValueError):
    """The slide lacks what the model needs (an mpp, a level)."""

    code = "slide_unsuitable"


class TileFailed(AnalysisError, RuntimeError):
    """A model raised on one tile: which tile (plan index, level-0 x, y) and the cause.

    No partial result is returned when this is raised."""

    code = "tile_failed"

    def __init__(self, index: int, x: int, y: int, cause: str) -> None:
        super().__init__(f"tile {index} at level-0 ({x}, {y}) failed: {cause}")
        self.index = index
        self.x = x
        self.y = y
        self.cause = cause

    def __reduce__(self) -> tuple[object, ...]:
        return (TileFailed, (self.index, self.x, self.y, self.cause))
