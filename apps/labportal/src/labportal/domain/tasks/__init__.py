"""Analysis tasks: models (built-in and team ONNX), tasks run on Dask, their results."""
