"""Path parameters every server reads the same way."""

from __future__ import annotations

from starlette.requests import Request

from slidestore.blobs import check_blob_id


def blob_id_param(request: Request) -> str:
    """The ``{blob_id}`` of the route, checked by the library's one blob-id check
    (:class:`~slidestore.errors.InvalidBlobId`, a 400, for anything else)."""
    return check_blob_id(str(request.path_params["blob_id"]))
