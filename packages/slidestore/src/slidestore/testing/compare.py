"""Image comparisons for tests: PSNR and an independent 2x2 box-mean reference.

Shipped with the library (like zarr's test kits) so every suite compares the same way.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]


def psnr(a: Image, b: Image) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images; ``inf`` when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def reference_halve(image: Image) -> Image:
    """The 2x2 mean written independently of the library's: pad by edge, reshape, sum."""
    h, w = image.shape[:2]
    padded = np.pad(image.astype(np.int64), ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    sums = padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2, 3).sum(axis=(1, 3))
    return ((sums + 2) // 4).astype(np.uint8)
