"""``slidestore-server serve DIR``: a read-only tile server for a folder of slides, no copy.

Every slide under the folder gets DeepZoom, IIIF and zarr exactly as a storage node serves a
blob (the node's routes, fast path and caches, on uvicorn with httptools and uvloop), plus an
index page with thumbnails and an OpenSeadragon viewer.
"""
