"""The slidestore lab portal (Litestar). The domain lands with the portal issue."""

__version__ = "0.1.0"
