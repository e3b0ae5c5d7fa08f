"""Errors of IIIF image requests, each naming the URL parameter at fault.

The IIIF Image API 3.0 (section 7.3 and the per-parameter sections) asks for
400 Bad Request for every refusal this service makes: malformed syntax, a region of
zero size or entirely outside the image, a size that would upscale without ``^``, a
size beyond ``maxWidth``/``maxHeight``/``maxArea``, an unsupported rotation, quality or
format. The one 501 the spec mentions (``^`` upscaling on a server without it) never
arises here because upscaling is supported. So every class here answers 400 (its
``status``, from the one status table of :mod:`slidestore.errors`) and the servers never
answer bad input with a 5xx.
"""

from __future__ import annotations

import re
from typing import Final, Literal, Self, get_args

from slidestore.errors import InvalidRequest, RegionTooLarge

Parameter = Literal["region", "size", "rotation", "quality", "format"]
_PARAMETER: Final = re.compile(r"IIIF (" + "|".join(get_args(Parameter)) + r"):")


class IIIFRequestError(InvalidRequest):
    """A IIIF image request this service refuses; ``parameter`` names the culprit."""

    code = "invalid_iiif_request"

    def __init__(self, parameter: Parameter, message: str):
        super().__init__(f"IIIF {parameter}: {message}")
        self.parameter: Parameter = parameter

    @property
    def http_status(self) -> int:
        """The status of the one table (kept for callers that read it off the error)."""
        return self.status

    @classmethod
    def from_wire(cls, detail: str) -> Self:
        """A client's copy of the error: the parameter is read back from the message."""
        found = _PARAMETER.search(detail)
        exc = cls.__new__(cls)
        InvalidRequest.__init__(exc, detail)
        exc.parameter = found.group(1) if found else "region"  # type: ignore[assignment]
        return exc


class IIIFSizeTooLarge(IIIFRequestError, RegionTooLarge):
    """The scaled image would exceed ``maxWidth``, ``maxHeight`` or ``maxArea``."""

    code = "region_too_large"

    def __init__(self, message: str):
        super().__init__("size", message)
