"""Finding models: the ``slidestore.models`` entry-point group, and decoding their params.

Built-ins register through the same group as a lab's package (see the library's
pyproject.toml), so a lab adds a model by installing a package; nothing here changes.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import msgspec

from slidestore.analysis.errors import AnalysisError, BadParams, UnknownModel
from slidestore.analysis.model import InputSpec, Model

__all__ = ["ENTRY_POINT_GROUP", "decode_params", "get_model", "models", "params_schema"]

ENTRY_POINT_GROUP = "slidestore.models"

log = logging.getLogger(__name__)


def _load(ep: EntryPoint) -> Model[Any]:
    try:
        model: Model[Any] = ep.load()
    except Exception as exc:  # a plugin that fails to import is named, not a traceback
        raise AnalysisError(f"model {ep.name!r} ({ep.value}) cannot be loaded: {exc}") from exc
    return model


def models() -> dict[str, Model[Any]]:
    """Every registered model that loads, by name; one that fails to import is logged
    and left out (a broken lab plugin must not hide the others)."""
    found: dict[str, Model[Any]] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            found[ep.name] = _load(ep)
        except AnalysisError as exc:
            log.warning("%s", exc)
    return found


def get_model(name: str) -> Model[Any]:
    """The model registered as ``name``; ``UnknownModel`` names the ones that exist."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return _load(ep)
    known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    raise UnknownModel(f"no model named {name!r}; registered: {', '.join(known) or 'none'}")


def resolve_model(model: str | Model[Any]) -> Model[Any]:
    return get_model(model) if isinstance(model, str) else model


def decode_params(model: Model[Any], params: object) -> msgspec.Struct:
    """``params`` (None, a dict, JSON bytes/str or the struct itself) -> the model's struct.

    ``BadParams`` carries msgspec's reason ("Expected `float`, got `str` - at `$.sigma`").
    """
    ptype = model.params_type
    try:
        if params is None:
            decoded: msgspec.Struct = msgspec.convert({}, ptype)
        elif isinstance(params, ptype):
            # Re-validate: a struct built in Python skips the constraints.
            decoded = msgspec.convert(msgspec.to_builtins(params), ptype)
        elif isinstance(params, (bytes, str)):
            decoded = msgspec.json.decode(params, type=ptype)
        else:
            decoded = msgspec.convert(params, ptype)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadParams(model.name, str(exc)) from None
    except (TypeError, ValueError) as exc:  # a __post_init__ that refuses the values
        raise BadParams(model.name, str(exc)) from None
    check = getattr(model, "check", None)
    if check is not None:
        try:
            check(decoded)
        except BadParams:
            raise
        except (TypeError, ValueError, OSError) as exc:
            raise BadParams(model.name, str(exc)) from None
    return decoded


def params_schema(model: str | Model[Any]) -> dict[str, Any]:
    """The JSON schema of a model's params (what a portal form or an API publishes)."""
    schema: dict[str, Any] = msgspec.json.schema(resolve_model(model).params_type)
    return schema


def input_spec(model: Model[Any], params: msgspec.Struct) -> InputSpec:
    """What the engine reads for this run: ``model.input``, unless the model derives it
    from its params (an ONNX classifier reads at its manifest's mpp and patch size)."""
    derive = getattr(model, "input_for", None)
    if derive is None:
        return model.input
    spec: InputSpec = derive(params)
    return spec
