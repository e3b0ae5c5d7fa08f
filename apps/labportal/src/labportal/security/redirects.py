"""Where the login page may send the browser afterwards: this site's own paths only.

Browsers drop tabs and newlines from URLs and read ``\\`` as ``/``, so ``/\\t/evil`` and
``/\\evil`` become ``//evil``, another host. Every percent-decoded layer is checked too,
since the value may be decoded again on its way (``/%2F%2Fevil``).
"""

from __future__ import annotations

from urllib.parse import unquote

# Enough for any value we produce (one layer from urlencode); deeper nesting is refused.
MAX_DECODINGS = 3


def _plain(path: str) -> bool:
    return (
        path.startswith("/")
        and "//" not in path
        and "\\" not in path
        and not any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path)
    )


def is_local_path(value: str) -> bool:
    """A path on this origin: one leading ``/``, no ``//`` or backslash, no control or
    whitespace characters, in the value and in each of its percent-decodings."""
    layer = value
    for _ in range(MAX_DECODINGS + 1):
        if not _plain(layer):
            return False
        decoded = unquote(layer)
        if decoded == layer:
            return True
        layer = decoded
    return False  # still changing after that many decodings: not something we made
