"""Vendor metadata schemas: every single-file format OpenSlide opens, normalised through the
shipped TOML schemas, on files generated with each vendor's tags and XML; a lab's schemas
from a directory (environment) and an entry point; bad schema files refused by name."""

from __future__ import annotations

from pathlib import Path

import openslide
import pytest

from slidestore.errors import MetadataSchemaError
from slidestore.metadata import SchemaRegistry, normalize, reset_default_registry
from slidestore.metadata.registry import ENV
from slidestore.reading import open_slide
from slidestore.synthetic.vendors import VENDORS, Vendor, VendorSlide, write_vendor_slide

SPEC = VendorSlide(
    width=640,
    height=480,
    tile_size=128,
    levels=3,
    mpp=0.2521,
    objective_power=40,
    scanner_id="UNIT-77",
)
EXPECTED_SCHEMA = {
    "hamamatsu": "hamamatsu-ndpi@1",
    "leica": "leica-scn@1",
    "philips": "philips-tiff@1",
    "ventana": "ventana-bif@1",
    "generic-tiff": "generic-tiff@1",
}
MODELS = {
    "hamamatsu": "C13210-01",
    "leica": "Leica SCN400",
    "philips": "UFS Scanner",
    "ventana": "VENTANA DP 200",
    "generic-tiff": "Generic Scanner 1",
}
# What OpenSlide exposes of the scanner's serial number, per vendor (NDPI keeps it in a
# private tag OpenSlide does not read; SCN's device element has none OpenSlide copies).
SERIAL = {
    "hamamatsu": None,
    "leica": None,
    "philips": "UNIT-77",
    "ventana": "UNIT-77",
    "generic-tiff": None,
}


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    reset_default_registry()
    yield
    reset_default_registry()


@pytest.mark.parametrize("vendor", VENDORS)
def test_generated_vendor_slide_is_read_as_that_vendor_and_normalised(
    vendor: Vendor, tmp_path: Path
) -> None:
    path = write_vendor_slide(vendor, tmp_path, SPEC)
    with openslide.OpenSlide(path) as raw:
        assert raw.properties[openslide.PROPERTY_NAME_VENDOR] == vendor
    with open_slide(path, reader="openslide") as slide:
        meta = slide.metadata
    assert meta.vendor == vendor
    assert meta.metadata_schema == EXPECTED_SCHEMA[vendor]
    assert meta.scanner_model == MODELS[vendor]
    assert meta.scanner_id == SERIAL[vendor]
    assert meta.mpp_x == pytest.approx(0.2521, rel=1e-6)
    assert meta.mpp_y == pytest.approx(0.2521, rel=1e-6)
    assert meta.acquired_at == "2024-03-05T14:07:09"
    expected_power = None if vendor == "generic-tiff" else 40.0
    assert meta.objective_power == expected_power
    # Leica's level 0 is the collection's extent (the glass around the scanned area).
    assert (meta.width, meta.height) >= (640, 480)
    assert len(meta.levels) >= 3
    assert meta.levels[0].width == meta.width


def test_real_aperio_slide_through_the_aperio_schema(sample_slide_path: Path) -> None:
    with open_slide(sample_slide_path) as slide:
        meta = slide.metadata
    assert meta.metadata_schema == "aperio@1"
    assert (meta.vendor, meta.scanner_model, meta.scanner_id) == (
        "aperio",
        "ScanScope",
        "CPAPERIOCS",
    )
    assert meta.software == "Aperio Image Library v11.2.1"
    assert (meta.mpp_x, meta.objective_power) == (0.499, 20.0)
    assert meta.acquired_at == "2009-12-29T09:59:15"
    assert (meta.compression, meta.quality) == ("JPEG", 30)
    assert (meta.width, meta.height, len(meta.levels)) == (2220, 2967, 1)


def _levels(sample_slide_path: Path):  # the geometry normalize needs, from a real slide
    with open_slide(sample_slide_path) as slide:
        return slide.levels


def test_units_are_converted_when_openslide_gave_no_mpp(sample_slide_path: Path) -> None:
    levels = _levels(sample_slide_path)
    philips = normalize(
        {
            "openslide.vendor": "philips",
            "philips.DICOM_PIXEL_SPACING": '"0.000242" "0.000243"',
            "philips.DICOM_DERIVATION_DESCRIPTION": "tiff-useBigTIFF=1-levels=20,10,5-q80",
            "philips.DICOM_ACQUISITION_DATETIME": "20231130081500.000000",
        },
        levels,
    )
    # Pixel spacing is in millimetres, row first: x is the second number.
    assert (philips.mpp_x, philips.mpp_y) == (pytest.approx(0.243), pytest.approx(0.242))
    assert philips.objective_power == 20.0
    assert philips.acquired_at == "2023-11-30T08:15:00"
    ndpi = normalize(
        {
            "openslide.vendor": "hamamatsu",
            "tiff.XResolution": "40000",
            "tiff.YResolution": "20000",
            "tiff.ResolutionUnit": "centimeter",
        },
        levels,
    )
    assert (ndpi.mpp_x, ndpi.mpp_y) == (pytest.approx(0.25), pytest.approx(0.5))
    inch = normalize(
        {
            "openslide.vendor": "generic-tiff",
            "tiff.XResolution": "101600",
            "tiff.YResolution": "101600",
            "tiff.ResolutionUnit": "inch",
        },
        levels,
    )
    assert inch.mpp_x == pytest.approx(0.25)
    # A resolution without a unit is not a length: no mpp rather than a wrong one.
    bare = normalize(
        {
            "openslide.vendor": "generic-tiff",
            "tiff.XResolution": "1",
            "tiff.ResolutionUnit": "none",
        },
        levels,
    )
    assert bare.mpp_x is None
    aperio_tz = normalize(
        {
            "openslide.vendor": "aperio",
            "aperio.Date": "12/29/09",
            "aperio.Time": "09:59:15",
            "aperio.Time Zone": "GMT-05:00",
        },
        levels,
    )
    assert aperio_tz.acquired_at == "2009-12-29T09:59:15-05:00"


def test_an_unknown_vendor_gets_no_schema(sample_slide_path: Path) -> None:
    meta = normalize(
        {"openslide.vendor": "mirax", "openslide.mpp-x": "0.3"}, _levels(sample_slide_path)
    )
    assert meta.metadata_schema is None
    assert meta.mpp_x is None and meta.scanner_model is None


LAB_SCHEMA = """
name = "aperio-cmu-scanner"
vendor = "aperio"
model = "ScanScope CS at CMU"
version = "2"
extends = "aperio"
priority = 10

[match]
"aperio.ScanScope ID" = "^CPAPERIOCS$"

[fields.scanner_model]
sources = ["aperio.Parmset"]
"""


def test_a_lab_schema_from_the_environment_directory_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_slide_path: Path
) -> None:
    (tmp_path / "cmu.toml").write_text(LAB_SCHEMA)
    monkeypatch.setenv(ENV, str(tmp_path))
    reset_default_registry()
    with open_slide(sample_slide_path) as slide:
        meta = slide.metadata
    assert meta.metadata_schema == "aperio-cmu-scanner@2"
    assert meta.scanner_model == "USM Filter"  # the lab's rule
    assert meta.scanner_id == "CPAPERIOCS"  # inherited from the shipped aperio schema
    assert meta.mpp_x == 0.499
    # Another Aperio scanner does not match the lab's schema: the shipped one applies.
    other = normalize(
        {"openslide.vendor": "aperio", "aperio.ScanScope ID": "SS1234"}, _levels(sample_slide_path)
    )
    assert other.metadata_schema == "aperio@1"


def test_a_lab_schema_replaces_a_shipped_one_by_name(
    tmp_path: Path, sample_slide_path: Path
) -> None:
    (tmp_path / "generic.toml").write_text(
        'name = "generic-tiff"\nvendor = "generic-tiff"\nversion = "9"\n'
        '[match]\n"openslide.vendor" = "^generic-tiff$"\n'
        '[fields.scanner_model]\ndefault = "Lab microscope"\n'
    )
    registry = SchemaRegistry.load([tmp_path], entry_points_too=False)
    meta = normalize(
        {"openslide.vendor": "generic-tiff", "openslide.mpp-x": "0.5"},
        _levels(sample_slide_path),
        registry=registry,
    )
    assert (meta.metadata_schema, meta.scanner_model) == ("generic-tiff@9", "Lab microscope")
    assert meta.mpp_x is None  # the replacement maps no mpp: nothing of the old one is left


def test_schemas_from_an_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample_slide_path: Path
) -> None:
    schemas = tmp_path / "lab_schemas"
    schemas.mkdir()
    (schemas / "cmu.toml").write_text(LAB_SCHEMA)
    (tmp_path / "lab_schemas_pkg.py").write_text(f"DIRECTORY = {str(schemas)!r}\n")
    dist = tmp_path / "lab_schemas_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-schemas-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[slidestore.metadata_schemas]\ncmu = lab_schemas_pkg:DIRECTORY\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = SchemaRegistry.load([])
    assert "aperio-cmu-scanner" in {s.name for s in registry.schemas}
    with open_slide(sample_slide_path) as slide:
        meta = normalize(slide.metadata.properties, slide.levels, registry=registry)
    assert meta.scanner_model == "USM Filter"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            'name = "x"\nvendor = "x"\n[fields.mpp_x]\nsources = [{ property = "a", unit = "furlong" }]\n',
            "unknown unit",
        ),
        ('name = "x"\nvendor = "x"\n[fields.colour]\nsources = ["a"]\n', "colour"),
        (
            'name = "x"\nvendor = "x"\n[match]\n"openslide.vendor" = "(["\n',
            "bad regular expression",
        ),
        (
            'name = "x"\nvendor = "x"\n[fields.scanner_id]\nsources = [{ unit = "mm" }]\n',
            "exactly one of property, join",
        ),
        (
            'name = "x"\nvendor = "x"\n[fields.scanner_id]\nsources = ["a"]\nunit = "mm"\n',
            "only mpp_x/mpp_y take a unit",
        ),
        ("name = ", "bad.toml"),
    ],
)
def test_malformed_schema_files_are_refused_with_their_path(
    tmp_path: Path, text: str, reason: str
) -> None:
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(MetadataSchemaError, match=reason) as caught:
        SchemaRegistry.load([tmp_path], entry_points_too=False)
    assert "bad.toml" in str(caught.value)
    assert caught.value.code == "invalid_metadata_schema"


def test_a_schema_loop_is_refused(tmp_path: Path) -> None:
    for a, b in (("a", "b"), ("b", "a")):
        (tmp_path / f"{a}.toml").write_text(
            f'name = "{a}"\nvendor = "v"\nextends = "{b}"\n[match]\n"openslide.vendor" = "v"\n'
        )
    registry = SchemaRegistry.load([tmp_path], entry_points_too=False)
    with pytest.raises(MetadataSchemaError, match="loop"):
        registry.pick({"openslide.vendor": "v"})
