"""Where the shared test data and the generated-slide cache live: :mod:`slidestore.datapaths`
(production code finds the sample slide there too), named here for the test kits."""

from slidestore.datapaths import (
    CACHE_DIR_ENV,
    SAMPLE_SLIDE_ENV,
    SAMPLE_SLIDE_NAME,
    TEST_DATA_ENV,
    repo_root,
    sample_slide_path,
    shared_data_dir,
    slide_cache_dir,
)

__all__ = [
    "CACHE_DIR_ENV",
    "SAMPLE_SLIDE_ENV",
    "SAMPLE_SLIDE_NAME",
    "TEST_DATA_ENV",
    "repo_root",
    "sample_slide_path",
    "shared_data_dir",
    "slide_cache_dir",
]
