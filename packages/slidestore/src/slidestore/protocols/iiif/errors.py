"""Errors of IIIF image requests, each naming the URL parameter at fault.

The IIIF Image API 3.0 (section 7.3 and the per-parameter sections) asks for
400 Bad Request for every refusal this service makes: malformed syntax, a region of
zero size or entirely outside the image, a size that would upscale without ``^``, a
size beyond ``maxWidth``/``maxHeight``/``maxArea``, an unsupported rotation, quality or
format. The one 501 the spec mentions (``^`` upscaling on a server without it) never
arises here because upscaling is supported. So ``http_status`` is always a 4xx and the
servers never answer bad input with a 5xx.
"""

from __future__ import annotations

from typing import Literal

from slidestore.errors import InvalidRequest, RegionTooLarge

Parameter = Literal["region", "size", "rotation", "quality", "format"]


class IIIFRequestError(InvalidRequest):
    """A IIIF image request this service refuses; ``parameter`` names the culprit."""

    code = "invalid_iiif_request"

    def __init__(self, parameter: Parameter, message: str, *, http_status: int = 400):
        super().__init__(f"IIIF {parameter}: {message}")
        self.parameter: Parameter = parameter
        self.http_status = http_status


class IIIFSizeTooLarge(IIIFRequestError, RegionTooLarge):
    """The scaled image would exceed ``maxWidth``, ``maxHeight`` or ``maxArea``."""

    code = "region_too_large"

    def __init__(self, message: str):
        super().__init__("size", message)
