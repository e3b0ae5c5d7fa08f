"""Which slide the demos serve: ``--slide PATH``, else the sample slide, else a generated one.

A user who clones only this repository has no ``../shared/data``. The demos then generate
a realistic Aperio slide with the library's test-slide generator. The generator cuts its
tissue texture from a real slide; without one it is given a seed image drawn here (H&E-like:
eosin-pink stroma with haematoxylin-purple nuclei on glass), written as a small tiled TIFF
that OpenSlide reads like any generic TIFF. Both files are made once and kept in the cache
directory the caller names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

#: The generated demo slide: three levels, ~40 Mpx, a few seconds to write.
GENERATED_SIZE: Final = (7680, 5760)
GENERATED_NAME: Final = "generated-demo-slide.svs"
_SEED_NAME: Final = "generated-demo-tissue.tiff"
_SEED_SIDE: Final = 1536
_GLASS: Final = (243, 241, 242)


@dataclass(frozen=True, slots=True)
class DemoSlide:
    path: Path
    origin: str
    """How it was chosen, for the demo to say: "given", "sample" or "generated"."""

    def describe(self) -> str:
        match self.origin:
            case "given":
                return f"{self.path} (given with --slide)"
            case "sample":
                return f"{self.path} (the sample slide)"
        return f"{self.path} (generated: no sample slide found, see --slide)"


def choose_demo_slide(explicit: Path | None, cache_dir: Path) -> DemoSlide:
    """``explicit`` if given, else the sample slide if present, else a generated slide in
    ``cache_dir`` (made on first use)."""
    if explicit is not None:
        if not explicit.is_file():
            raise FileNotFoundError(f"--slide {explicit}: no such file")
        return DemoSlide(explicit.resolve(), "given")
    from slidestore.datapaths import sample_slide_path

    try:
        return DemoSlide(sample_slide_path().resolve(), "sample")
    except FileNotFoundError:
        return DemoSlide(generated_demo_slide(cache_dir), "generated")


def generated_demo_slide(cache_dir: Path) -> Path:
    """The generated demo slide in ``cache_dir``, written (atomically) if missing."""
    from slidestore.synthetic.svs import write_svs

    target = cache_dir / GENERATED_NAME
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    seed = _seed_tissue(cache_dir / _SEED_NAME)
    partial = target.with_suffix(".partial")
    width, height = GENERATED_SIZE
    write_svs(partial, width, height, sample=seed, seed=7, islands=2)
    partial.replace(target)
    return target


def _seed_tissue(path: Path) -> Path:
    if path.is_file():
        return path
    import tifffile

    partial = path.with_suffix(".partial")
    tifffile.imwrite(
        partial, _draw_tissue(np.random.default_rng(16)), tile=(256, 256), photometric="rgb"
    )
    partial.replace(path)
    return path


def _smooth_noise(rng: np.random.Generator, side: int, cell: int) -> npt.NDArray[np.float32]:
    """Values in [0, 1] varying over about ``cell`` pixels (bilinear upsampled noise)."""
    coarse = rng.random((side // cell + 2, side // cell + 2), dtype=np.float32)
    position = np.arange(side, dtype=np.float32) / cell
    i = position.astype(np.int64)
    t = position - i
    rows = coarse[i] * (1 - t)[:, None] + coarse[i + 1] * t[:, None]
    smooth: npt.NDArray[np.float32] = (
        rows[:, i] * (1 - t)[None, :] + rows[:, i + 1] * t[None, :]
    ).astype(np.float32)
    return smooth


def _draw_tissue(rng: np.random.Generator) -> npt.NDArray[np.uint8]:
    side = _SEED_SIDE
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side - 0.5
    # Tissue over the whole middle (the generator cuts its texture from the densest
    # square), glass in the corners (it learns the glass colour there).
    edge = 0.56 + 0.06 * (_smooth_noise(rng, side, 192) - 0.5)
    tissue = np.hypot(x, y) < edge
    stroma = np.array([232, 150, 190], np.float32)
    nucleus = np.array([95, 60, 150], np.float32)
    shade = 0.75 + 0.35 * _smooth_noise(rng, side, 48)[..., None]
    image: npt.NDArray[np.float32] = np.clip(stroma * shade, 0, 255).astype(np.float32)
    # Nuclei: small dark ellipses, denser in patches.
    density = _smooth_noise(rng, side, 128)
    for cy, cx in rng.integers(8, side - 8, size=(9000, 2)):
        if not tissue[cy, cx] or rng.random() > density[cy, cx]:
            continue
        ry, rx = rng.integers(3, 7, size=2)
        window = image[cy - ry : cy + ry + 1, cx - rx : cx + rx + 1]
        yy, xx = np.ogrid[-ry : ry + 1, -rx : rx + 1]
        window[(yy / ry) ** 2 + (xx / rx) ** 2 <= 1] = nucleus * (0.85 + 0.3 * rng.random())
    image[~tissue] = _GLASS
    grain = rng.normal(0.0, 4.0, size=image.shape).astype(np.float32)
    pixels: npt.NDArray[np.uint8] = np.clip(image + grain, 0, 255).astype(np.uint8)
    return pixels
