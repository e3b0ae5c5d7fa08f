"""Synthetic whole-slide images: a realistic tiled Aperio SVS of any size, written with
bounded memory (the demo uses one when no sample slide is present; the test kits in
:mod:`slidestore.testing` build their slides from these modules)."""
