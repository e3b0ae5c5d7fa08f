"""Small slides in each single-file format OpenSlide opens besides Aperio, written with
tifffile: Hamamatsu NDPI, Leica SCN, Philips TIFF, Ventana BIF and a generic tiled TIFF.

Each carries its vendor's tags and XML the way the scanner writes them (the parts OpenSlide
reads to recognise the format and the metadata the normalising schemas map), over a small
synthetic pyramid (every level is a 2x reduction, pixels are a gradient with stripes).
They are test fixtures: the pixels of a level are made in memory, so keep them small
(:data:`MAX_SIDE`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import numpy.typing as npt
import tifffile

MAX_SIDE: Final = 8192
"""The largest level-0 side these generators accept (a level is built in memory)."""

Vendor = Literal["hamamatsu", "leica", "philips", "ventana", "generic-tiff"]
VENDORS: Final[tuple[Vendor, ...]] = ("hamamatsu", "leica", "philips", "ventana", "generic-tiff")

# NDPI private tags (OpenSlide's openslide-vendor-hamamatsu.c, tifffile's NDPI_TAGS).
NDPI_FORMAT_FLAG: Final = 65420
NDPI_SOURCELENS: Final = 65421
NDPI_XOFFSET: Final = 65422
NDPI_YOFFSET: Final = 65423
NDPI_FOCAL_PLANE: Final = 65424
NDPI_REFERENCE: Final = 65427
NDPI_PROPERTY_MAP: Final = 65449
XMP_TAG: Final = 700
LEICA_XMLNS: Final = "http://www.leica-microsystems.com/scn/2010/10/01"

RGB = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True, kw_only=True)
class VendorSlide:
    """What a generated slide declares: the values its vendor's schema must recover."""

    width: int = 1024
    height: int = 768
    tile_size: int = 256
    levels: int = 3
    mpp: float = 0.25
    objective_power: int = 40
    scanner_model: str = ""
    scanner_id: str = "SN-0042"
    scanned_at: datetime = datetime(2024, 3, 5, 14, 7, 9)
    quality: int = 90

    def __post_init__(self) -> None:
        if not (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE):
            raise ValueError(f"a vendor test slide is at most {MAX_SIDE} px a side")
        if self.tile_size % 16 or self.tile_size < 16:
            raise ValueError("tile size must be a positive multiple of 16")
        if self.levels < 1 or min(self.width, self.height) >> (self.levels - 1) < 1:
            raise ValueError(f"{self.levels} levels do not fit a {self.width}x{self.height} slide")

    def sizes(self) -> list[tuple[int, int]]:
        return [(self.width >> i, self.height >> i) for i in range(self.levels)]


DEFAULT_MODELS: Final[dict[Vendor, str]] = {
    "hamamatsu": "C13210-01",
    "leica": "Leica SCN400",
    "philips": "UFS Scanner",
    "ventana": "VENTANA DP 200",
    "generic-tiff": "Generic Scanner 1",
}


def pixels(width: int, height: int) -> RGB:
    """A level's pixels: smooth colour gradients with stripes, so JPEG has work to do."""
    ys, xs = np.mgrid[0:height, 0:width]
    red = 180 + (xs * 60 // max(width, 1))
    green = 120 + (ys * 80 // max(height, 1))
    blue = 200 - ((xs + ys) % 64)
    return np.stack([red, green, blue], axis=-1).clip(0, 255).astype(np.uint8)


def _level(spec: VendorSlide, index: int) -> RGB:
    width, height = spec.sizes()[index]
    return pixels(width, height)


def _jpeg(spec: VendorSlide) -> dict[str, Any]:
    return {"compression": "jpeg", "compressionargs": {"level": spec.quality}, "photometric": "rgb"}


def _model(spec: VendorSlide, vendor: Vendor) -> str:
    return spec.scanner_model or DEFAULT_MODELS[vendor]


def _tiled_pyramid(
    path: Path,
    spec: VendorSlide,
    *,
    first: dict[str, Any],
    every: dict[str, Any],
    resolution: bool = True,
    bigtiff: bool = False,
) -> Path:
    """Tiled JPEG levels, level 0 first; ``first`` adds tags to level 0, ``every`` to all;
    with ``resolution``, each level's pixels per centimetre."""
    per_cm = 10_000 / spec.mpp
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tif:
        for index in range(spec.levels):
            tags: dict[str, Any] = {**every, **(first if index == 0 else {})}
            if resolution:
                scale = per_cm / (1 << index)
                tags |= {"resolution": (scale, scale), "resolutionunit": "CENTIMETER"}
            tif.write(
                _level(spec, index),
                tile=(spec.tile_size, spec.tile_size),
                subfiletype=1 if index else 0,
                metadata=None,
                **_jpeg(spec),
                **tags,
            )
    return path


def write_generic_tiff(path: Path, spec: VendorSlide = VendorSlide()) -> Path:
    """A plain tiled JPEG TIFF with Make/Model/DateTime and a resolution in centimetres."""
    make_model = [(271, "s", 0, "Generic", True), (272, "s", 0, _model(spec, "generic-tiff"), True)]
    return _tiled_pyramid(
        path, spec, first={"datetime": spec.scanned_at, "extratags": make_model}, every={}
    )


def write_ndpi(path: Path, spec: VendorSlide = VendorSlide()) -> Path:
    """Hamamatsu NDPI: every level one JPEG in one strip, the NDPI tags on each page.

    The JPEGs carry no restart markers, so OpenSlide reads each level as a single tile
    (real NDPIs mark restarts; the metadata is what matters here).
    """
    per_cm = 10_000 / spec.mpp
    props = "\r\n".join(
        [
            f"Created={spec.scanned_at:%Y/%m/%d}",
            f"Updated={spec.scanned_at:%Y/%m/%d}",
            "Objective.Lens.Magnificant=" + str(spec.objective_power),
        ]
    )
    with tifffile.TiffWriter(path) as tif:
        for index in range(spec.levels):
            height = spec.sizes()[index][1]
            tags = [
                (NDPI_FORMAT_FLAG, "I", 1, 1, True),
                (NDPI_SOURCELENS, "f", 1, float(spec.objective_power), True),
                (NDPI_XOFFSET, "i", 1, 1200, True),
                (NDPI_YOFFSET, "i", 1, -800, True),
                (NDPI_FOCAL_PLANE, "i", 1, 0, True),
                (NDPI_REFERENCE, "s", 0, "synthetic", True),
                (271, "s", 0, "Hamamatsu", True),
                (272, "s", 0, _model(spec, "hamamatsu"), True),
            ]
            if index == 0:
                tags.append((NDPI_PROPERTY_MAP, "s", 0, props, True))
            tif.write(
                _level(spec, index),
                rowsperstrip=height,
                resolution=(per_cm / (1 << index), per_cm / (1 << index)),
                resolutionunit="CENTIMETER",
                software="NDP.scan 3.4.0",
                datetime=spec.scanned_at,
                extratags=tags,
                metadata=None,
                **_jpeg(spec),
            )
    return path


def _scn_xml(spec: VendorSlide) -> str:
    nm_per_px = spec.mpp * 1000
    across, down = round(spec.width * nm_per_px), round(spec.height * nm_per_px)
    dims = "".join(
        f'<dimension sizeX="{w}" sizeY="{h}" r="{i}" ifd="{i}"/>'
        for i, (w, h) in enumerate(spec.sizes())
    )
    created = spec.scanned_at.strftime("%Y-%m-%dT%H:%M:%S.00Z")
    return (
        f'<?xml version="1.0"?><scn xmlns="{LEICA_XMLNS}">'
        f'<collection name="synthetic" uuid="00000000-0000-0000-0000-000000000001" '
        f'sizeX="{across + 2000}" sizeY="{down + 2000}">'
        f"<barcode>{base64.b64encode(b'SYN-1').decode()}</barcode>"
        f'<image name="main" uuid="00000000-0000-0000-0000-000000000002">'
        f"<creationDate>{created}</creationDate>"
        f'<device model={quoteattr(_model(spec, "leica"))} version="1.5.1.10864 2012/05/10 '
        f'13:29:07" serial={quoteattr(spec.scanner_id)}/>'
        f'<pixels sizeX="{spec.width}" sizeY="{spec.height}">{dims}</pixels>'
        f'<view sizeX="{across}" sizeY="{down}" offsetX="1000" offsetY="1000" spacingZ="0"/>'
        f"<scanSettings><objectiveSettings><objective>{spec.objective_power}</objective>"
        f"</objectiveSettings><illuminationSettings><numericalAperture>0.7"
        f"</numericalAperture><illuminationSource>brightfield</illuminationSource>"
        f"</illuminationSettings></scanSettings></image></collection></scn>"
    )


def write_leica_scn(path: Path, spec: VendorSlide = VendorSlide()) -> Path:
    """Leica SCN: the collection XML in the first page's ImageDescription, one main image,
    each level's resolution in pixels per centimetre."""
    return _tiled_pyramid(
        path,
        spec,
        first={"description": _scn_xml(spec)},
        every={"software": "Leica SCN"},
        bigtiff=True,
    )


def _philips_xml(spec: VendorSlide) -> str:
    def attr(name: str, value: str, group: str = "0x0000", element: str = "0x0000") -> str:
        return (
            f'<Attribute Name="{name}" Group="{group}" Element="{element}" PMSVR="IString">'
            f"{escape(value)}</Attribute>"
        )

    spacing_mm = spec.mpp / 1000
    representations = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        + attr(
            "DICOM_PIXEL_SPACING", f'"{spacing_mm * (1 << i):.9g}" "{spacing_mm * (1 << i):.9g}"'
        )
        + attr("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", str(i))
        + attr("PIIM_PIXEL_DATA_REPRESENTATION_COLUMNS", str(w))
        + attr("PIIM_PIXEL_DATA_REPRESENTATION_ROWS", str(h))
        + "</DataObject>"
        for i, (w, h) in enumerate(spec.sizes())
    )
    levels = ",".join(str(spec.objective_power >> i) for i in range(spec.levels))
    wsi = (
        '<DataObject ObjectType="DPScannedImage">'
        + attr("PIM_DP_IMAGE_TYPE", "WSI")
        + attr("DICOM_PIXEL_SPACING", f'"{spacing_mm:.9g}" "{spacing_mm:.9g}"')
        + attr("DICOM_DERIVATION_DESCRIPTION", f"tiff-useBigTIFF=1-levels={levels}-q80")
        + '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" PMSVR="IDataObjectArray">'
        + f"<Array>{representations}</Array></Attribute>"
        + "</DataObject>"
    )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?><DataObject ObjectType="DPUfsImport">'
        + attr("DICOM_ACQUISITION_DATETIME", spec.scanned_at.strftime("%Y%m%d%H%M%S.000000"))
        + attr("DICOM_MANUFACTURER", "PHILIPS")
        + attr("DICOM_MANUFACTURERS_MODEL_NAME", _model(spec, "philips"))
        + attr("DICOM_DEVICE_SERIAL_NUMBER", spec.scanner_id)
        + attr("DICOM_SOFTWARE_VERSIONS", '"1.8.6824" "20180906_R51"')
        + attr("PIM_DP_UFS_BARCODE", base64.b64encode(b"SYN-1").decode())
        + '<Attribute Name="PIM_DP_SCANNED_IMAGES" PMSVR="IDataObjectArray"><Array>'
        + wsi
        + "</Array></Attribute></DataObject>"
    )


def write_philips_tiff(path: Path, spec: VendorSlide = VendorSlide()) -> Path:
    """Philips TIFF: Software "Philips ...", the DPUfsImport XML as ImageDescription (the
    pixel spacing is in the XML; the TIFF resolution tags are left out, as Philips does)."""
    return _tiled_pyramid(
        path,
        spec,
        first={"description": _philips_xml(spec)},
        every={"software": "Philips DP v1.0"},
        resolution=False,
    )


def _iscan_xmp(spec: VendorSlide) -> bytes:
    scanned = spec.scanned_at.strftime("%m/%d/%Y %H:%M:%S")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Metadata><iScan '
        f"ScannerModel={quoteattr(_model(spec, 'ventana'))} UnitNumber={quoteattr(spec.scanner_id)} "
        f'Magnification="{spec.objective_power}" ScanRes="{spec.mpp}" '
        f'ScanDate="{scanned}" BuildVersion="1.1.0.15854" FocusMode="Auto"/></Metadata>'
    ).encode()


def write_ventana_bif(path: Path, spec: VendorSlide = VendorSlide()) -> Path:
    """Ventana BIF: a label page carrying the ``iScan`` XMP first, then ``level=N mag=M``
    tiled pages (no tile-joint XML, so OpenSlide lays the tiles on a plain grid)."""
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        label = pixels(256, 256)
        tif.write(
            label,
            description="Label_Image",
            extratags=[(XMP_TAG, "B", len(_iscan_xmp(spec)), _iscan_xmp(spec), True)],
            metadata=None,
            photometric="rgb",
        )
        for index in range(spec.levels):
            mag = spec.objective_power / (1 << index)
            tif.write(
                _level(spec, index),
                tile=(spec.tile_size, spec.tile_size),
                description=f"level={index} mag={mag:g} quality={spec.quality}",
                metadata=None,
                **_jpeg(spec),
            )
    return path


WRITERS: Final = {
    "hamamatsu": write_ndpi,
    "leica": write_leica_scn,
    "philips": write_philips_tiff,
    "ventana": write_ventana_bif,
    "generic-tiff": write_generic_tiff,
}
SUFFIXES: Final[dict[Vendor, str]] = {
    "hamamatsu": ".ndpi",
    "leica": ".scn",
    "philips": ".tiff",
    "ventana": ".bif",
    "generic-tiff": ".tiff",
}


def write_vendor_slide(vendor: Vendor, directory: Path, spec: VendorSlide = VendorSlide()) -> Path:
    """Write ``vendor``'s slide into ``directory`` (named ``<vendor><suffix>``)."""
    path = directory / f"{vendor}{SUFFIXES[vendor]}"
    return WRITERS[vendor](path, spec)
