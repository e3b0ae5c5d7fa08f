"""Errors of ``slidestore.analysis``; each also inherits the builtin a caller would catch."""

from __future__ import annotations

from slidestore.errors import SlidestoreError


class AnalysisError(SlidestoreError):
    """Base of the analysis errors."""

    code = "analysis_error"


class UnknownModel(AnalysisError, LookupError):
    """No model of that name is registered in the ``slidestore.models`` entry-point group."""

    code = "unknown_model"
    status = 404


class BadParams(AnalysisError, ValueError):
    """Parameters that do not match the model's params schema; ``reason`` is msgspec's."""

    code = "bad_params"
    status = 422

    def __init__(self, model: str, reason: str | None = None) -> None:
        if reason is None:  # from the wire: only the server's message is known
            super().__init__(model)
            self.model, self.reason = "", model
            return
        super().__init__(f"bad parameters for model {model!r}: {reason}")
        self.model = model
        self.reason = reason


class SlideUnsuitable(AnalysisError, ValueError):
    """The slide lacks what the model needs (an mpp, a level)."""

    code = "slide_unsuitable"
    status = 422


class TileFailed(AnalysisError, RuntimeError):
    """A model raised on one tile: which tile (plan index, level-0 x, y) and the cause.

    No partial result is returned when this is raised."""

    code = "tile_failed"
    status = 422

    def __init__(self, index: int | str, x: int = -1, y: int = -1, cause: str = "") -> None:
        if isinstance(index, str):  # from the wire: only the server's message is known
            super().__init__(index)
            self.index, self.x, self.y, self.cause = -1, x, y, index
            return
        super().__init__(f"tile {index} at level-0 ({x}, {y}) failed: {cause}")
        self.index = index
        self.x = x
        self.y = y
        self.cause = cause

    def __reduce__(self) -> tuple[object, ...]:
        return (TileFailed, (self.index, self.x, self.y, self.cause))
