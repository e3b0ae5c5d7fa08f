"""Models are found through the ``slidestore.models`` entry-point group; params are
decoded with msgspec and refused with the schema's reason."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from slidestore import analysis
from slidestore.analysis.errors import AnalysisError, BadParams, UnknownModel
from slidestore.analysis.models.tissue import MODEL as TISSUE
from slidestore.analysis.registry import decode_params, params_schema
from slidestore.errors import SlidestoreError


@pytest.fixture
def lab_plugin(tmp_path: Path) -> Iterator[str]:
    """A lab's package, "installed" the way pip leaves it: a module and a dist-info with
    entry_points.txt on sys.path (importlib.metadata reads exactly that)."""
    name = f"labmodels_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import msgspec
            from dataclasses import dataclass, field
            from slidestore.analysis import InputSpec, Reduced, TileOutput

            class Params(msgspec.Struct, forbid_unknown_fields=True):
                threshold: float = 0.5

            @dataclass(frozen=True)
            class Counter:
                name: str = "lab-counter"
                version: str = "0.3"
                description: str = "a lab's own model"
                input: InputSpec = field(default_factory=InputSpec)
                params_type: type = Params

                def process_tile(self, pixels, ctx, params):
                    return TileOutput()

                def reduce(self, outputs, slide, params):
                    return Reduced(features=[], rows=[], summary={"tiles": len(outputs)})

            MODEL = Counter()
            """
        )
    )
    dist = tmp_path / f"{name}-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(
        f"[slidestore.models]\nlab-counter = {name}:MODEL\nlab-broken = {name}_missing:MODEL\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_builtins_are_listed() -> None:
    found = analysis.models()
    assert found["tissue"] is TISSUE
    assert analysis.get_model("tissue") is TISSUE


def test_a_lab_plugin_registers_through_its_entry_point(lab_plugin: str) -> None:
    found = analysis.models()
    assert "lab-counter" in found and found["lab-counter"].version == "0.3"
    assert "tissue" in found
    # A plugin that cannot be imported is left out of the list, and named when asked for.
    assert "lab-broken" not in found
    with pytest.raises(AnalysisError, match=r"lab-broken.*cannot be loaded"):
        analysis.get_model("lab-broken")
    model = analysis.get_model("lab-counter")
    assert type(model).__module__ == lab_plugin
    assert params_schema("lab-counter")["$defs"]["Params"]["properties"]["threshold"] == {
        "type": "number",
        "default": 0.5,
    }


def test_unknown_model_is_named_with_the_registered_ones() -> None:
    with pytest.raises(UnknownModel, match=r"no model named .nope.*tissue") as caught:
        analysis.get_model("nope")
    assert isinstance(caught.value, LookupError) and isinstance(caught.value, SlidestoreError)
    with pytest.raises(UnknownModel):
        analysis.run("nope", "/nonexistent.svs")


def test_params_decode_and_refuse_with_the_schemas_reason() -> None:
    params = decode_params(TISSUE, {"min_area_um2": 5})
    assert params.min_area_um2 == 5.0  # type: ignore[attr-defined]
    assert decode_params(TISSUE, None) == decode_params(TISSUE, b"{}")
    assert decode_params(TISSUE, '{"simplify": 2}').simplify == 2.0  # type: ignore[attr-defined]
    with pytest.raises(BadParams) as caught:
        decode_params(TISSUE, {"min_area_um2": -1})
    assert caught.value.reason == "Expected `float` >= 0.0 - at `$.min_area_um2`"
    assert isinstance(caught.value, ValueError)
    with pytest.raises(BadParams, match="Object contains unknown field `colour`"):
        decode_params(TISSUE, {"colour": "blue"})
    with pytest.raises(BadParams, match="malformed"):
        decode_params(TISSUE, b"{not json")


def test_params_schema_is_published() -> None:
    schema = analysis.params_schema("tissue")
    props = schema["$defs"]["TissueParams"]["properties"]
    assert props["min_area_um2"] == {"type": "number", "minimum": 0.0, "default": 10000.0}
