"""What of a slide's metadata a viewer may see: raw vendor properties can name people.

An Aperio file records the scanning user (``aperio.User``), the original file name
(``aperio.Filename``, often an accession or patient number) and free text in the image
description; other vendors have their own such fields. The normalized fields are kept
(they describe the image), and of the raw properties only an allow list: OpenSlide's own
geometry keys and a few vendor keys that are plainly technical. Whatever a vendor adds in
future is withheld until someone decides it is harmless.
"""

from __future__ import annotations

from typing import Final

import msgspec

from slidestore.metadata.schema import SlideMetadata

#: Raw property keys shown to every reader (OpenSlide's own, minus its free-text comment).
SAFE_PREFIXES: Final = ("openslide.",)
WITHHELD: Final = frozenset({"openslide.comment"})
SAFE_KEYS: Final = frozenset(
    {
        "aperio.AppMag",
        "aperio.MPP",
        "aperio.StripeWidth",
        "aperio.OriginalWidth",
        "aperio.OriginalHeight",
        "tiff.ResolutionUnit",
        "tiff.XResolution",
        "tiff.YResolution",
    }
)


def is_safe_property(key: str) -> bool:
    if key in WITHHELD:
        return False
    return key in SAFE_KEYS or key.startswith(SAFE_PREFIXES)


def redacted(metadata: SlideMetadata) -> SlideMetadata:
    """``metadata`` with only the raw properties any viewer may read."""
    kept = {k: v for k, v in metadata.properties.items() if is_safe_property(k)}
    return msgspec.structs.replace(metadata, properties=kept)
