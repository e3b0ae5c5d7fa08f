"""Session fixtures shared by several test modules of the library."""

from slidestore.analysis.testing import analysis_client

__all__ = ["analysis_client"]
