"""Starlette apps wrapping the slidestore library: storage node and coordinator."""

__version__ = "0.1.0"
