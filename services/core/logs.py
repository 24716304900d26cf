"""Structured logs: one JSON object per line on stderr.

Records go through a queue to a writer thread, so a call pays for a queue
put, not for formatting and writing its line, and a slow stderr never stalls
the event loop. The writer drains the queue in batches, at most twenty a
second: one write and one flush for every line that queued up meanwhile.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import queue
import sys
import threading
import time
from typing import Any, NamedTuple, TextIO


def _timestamp(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


# Fields every line of this process carries (a worker's index under `serve --workers`).
_process_fields: dict[str, Any] = {}


def format_record(record: logging.LogRecord | InfoLine) -> str:
    if isinstance(record, InfoLine):
        entry = {"ts": _timestamp(record.created), "level": "info", "logger": record.logger, "msg": record.msg}
        return json.dumps(entry | _process_fields | record.fields)
    entry = {
        "ts": _timestamp(record.created),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
        **_process_fields,
        **getattr(record, "fields", {}),
    }
    if record.exc_info:
        entry["error"] = logging.Formatter().formatException(record.exc_info)
    return json.dumps(entry)


class InfoLine(NamedTuple):
    """An INFO line made without a LogRecord: what the per-RPC line costs the call is one tuple."""

    created: float
    logger: str
    msg: str
    fields: dict[str, Any]


_writer: _Writer | None = None


def info(logger: logging.Logger, msg: str, fields: dict[str, Any]) -> None:
    """`logger.info(msg)` with fields, queued straight to the writer when there is one."""
    if _writer is not None:
        _writer.records.put(InfoLine(time.time(), logger.name, msg, fields))
    else:
        logger.info(msg, extra={"fields": fields})


class _Writer(threading.Thread):
    _STOP = None
    PAUSE = 0.05  # seconds between writes at most; a line shows within about that

    def __init__(self, stream: TextIO):
        super().__init__(name="log-writer", daemon=True)
        self.stream = stream
        self.records: queue.SimpleQueue[logging.LogRecord | InfoLine | None] = queue.SimpleQueue()

    def run(self) -> None:
        while True:
            batch = [self.records.get()]
            while not self.records.empty() and len(batch) < 1000:
                batch.append(self.records.get_nowait())
            stopping = self._STOP in batch
            lines = [format_record(r) + "\n" for r in batch if r is not self._STOP]
            self.stream.write("".join(lines))
            self.stream.flush()
            if stopping:
                return
            # Let lines gather: waking for every line costs the serving thread a GIL hand-off per call.
            time.sleep(self.PAUSE)

    def stop(self) -> None:
        self.records.put(self._STOP)
        self.join(timeout=5)


class _QueueHandler(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The stock prepare() formats the message on the caller's thread; the writer does it.
        return record


def configure(level: str = "INFO", stream: TextIO = sys.stderr, **process_fields: Any) -> None:
    """JSON lines to `stream` from a writer thread, every line with `process_fields`. Called again in a
    forked worker, whose copy of the parent's writer has no thread."""
    global _writer
    _process_fields.clear()
    _process_fields.update(process_fields)
    writer = _writer = _Writer(stream)
    writer.start()
    atexit.register(writer.stop)  # writes what is still queued
    root = logging.getLogger()
    root.handlers[:] = [_QueueHandler(writer.records)]
    root.setLevel(level)


def close() -> None:
    """Writes what is queued and stops the writer: for a process that leaves with os._exit."""
    if _writer is not None:
        _writer.stop()
