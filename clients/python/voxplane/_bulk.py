"""Importing a CSV file of numbers, of any size, with BatchCreateNumbers: `numbers.import_numbers_csv(path)`.

The file is streamed, never loaded whole, so memory stays flat however large it is; the next batch is
read while the current one is on the wire. Every row gets a request_id made of its line number and a
hash of its content, so running the import again after a failure skips the rows imported already
(the server returns the Number it made then) and goes on from there, even once a bad row is fixed.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from tqdm import tqdm

from ._errors import FieldViolation, InvalidArgumentError, VoxplaneError
from .numbers.v1 import numbers_pb2 as pb

COLUMNS = ("e164_number", "provider_ref", "name", "aor_link", "webhook", "forward_sip_to")
REQUIRED = ("e164_number", "provider_ref")
MAX_BATCH_SIZE = 1000  # BatchCreateNumbers takes up to 1,000 creates

# The server names fields of CreateNumberRequest; the file has columns.
_COLUMN_OF_FIELD = {"ingress_info.webhook": "webhook", "ingress_info": "webhook"}
_ITEM = re.compile(r"requests\[(\d+)\](?:\.([A-Za-z_][\w.]*))?")
# Statuses of a batch the server refused as a whole; after others (a deadline, a lost connection) it
# may have been committed or not.
_REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    }
)


@dataclass(frozen=True)
class ImportSummary:
    """What an import did. `rows` counts every row now in the workspace: created by this run, or by an
    earlier run of the same file."""

    rows: int
    batches: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Batch:
    request: pb.BatchCreateNumbersRequest
    lines: list[int]  # the file's line of each item
    problems: list[FieldViolation]  # rows that cannot be sent as they are
    bytes_read: int  # of the file, up to the end of this batch


class CsvImport:
    """One import of one file: reads it a batch at a time, keeps count, shows progress, and turns a
    failed batch into an error naming the file's lines. `import_csv` and `import_csv_async` send."""

    def __init__(self, path: str | os.PathLike[str], batch_size: int, progress: bool | None):
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH_SIZE}, got {batch_size}")
        self.path = Path(path)
        self.batch_size = batch_size
        self.rows = self.batches_sent = 0
        self.started = time.monotonic()
        # Bytes read drive the bar; disable=None draws it only when stderr is a terminal.
        self.size = self.path.stat().st_size
        self.bar = tqdm(
            total=self.size, desc=self.path.name, unit="B", unit_scale=True, file=sys.stderr,
            disable=None if progress is None else not progress,
        )
        self._batches: Iterator[_Batch] | None = None

    def __enter__(self) -> CsvImport:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._batches is not None:
            self._batches.close()  # type: ignore[attr-defined]  # closes the file
        self.bar.close()

    # --- reading -----------------------------------------------------------------------------

    def next_batch(self) -> _Batch | None:
        """The next batch of the file, None at its end. Called from one thread at a time."""
        if self._batches is None:
            self._batches = self._read()
        return next(self._batches, None)

    def _read(self) -> Iterator[_Batch]:
        with self.path.open("rb") as file:
            done = 0

            def lines() -> Iterator[str]:
                nonlocal done
                for number, raw in enumerate(file, start=1):
                    done += len(raw)
                    try:
                        yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                    except UnicodeDecodeError:
                        raise ValueError(f"{self.path}: line {number} is not UTF-8 text") from None

            reader = csv.reader(lines())
            header = next(reader, None)
            if header is None:
                return
            indexes = self._columns(header)
            batch = self._new_batch()
            end = reader.line_num
            for row in reader:
                line, end = end + 1, reader.line_num
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                self._add(batch, line, row, indexes, len(header))
                if len(batch.lines) == self.batch_size:
                    batch.bytes_read = done
                    yield batch
                    batch = self._new_batch()
            if batch.lines:
                batch.bytes_read = done
                yield batch

    def _new_batch(self) -> _Batch:
        # Only what was made is counted, so the server need not send each Number in full.
        return _Batch(pb.BatchCreateNumbersRequest(view=pb.NUMBER_VIEW_BASIC), [], [], 0)

    def _columns(self, header: list[str]) -> tuple[int, ...]:
        """Where each of COLUMNS is in a row, -1 for a column the file does not have."""
        names = [name.strip().lower() for name in header]
        unknown = sorted({n for n in names if n not in COLUMNS})
        missing = [c for c in REQUIRED if c not in names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if unknown or missing or repeated:
            found = "; ".join(
                f"{what}: {', '.join(cols)}"
                for what, cols in (("missing", missing), ("unknown", unknown), ("repeated", repeated))
                if cols
            )
            raise ValueError(
                f"{self.path}: line 1 must name the columns {', '.join(REQUIRED)} and, if wanted, "
                f"{', '.join(COLUMNS[len(REQUIRED):])} ({found})"
            )
        return tuple(names.index(c) if c in names else -1 for c in COLUMNS)

    def _add(self, batch: _Batch, line: int, row: list[str], indexes: tuple[int, ...], width: int) -> None:
        batch.lines.append(line)
        if len(row) != width:
            batch.problems.append(FieldViolation(f"line {line}", f"has {len(row)} fields, the header {width}"))
            batch.request.requests.add()
            return
        values = [row[i].strip() if i >= 0 else "" for i in indexes]
        e164, provider_ref, name, aor_link, webhook, forward_sip_to = values
        # The same row on the same line always gets the same request_id: a rerun creates nothing twice.
        digest = hashlib.blake2b("\x1f".join(values).encode(), digest_size=12).hexdigest()
        item = batch.request.requests.add(
            e164_number=e164, provider_ref=provider_ref, name=name, request_id=f"csv-{line}-{digest}"
        )
        if bool(aor_link) + bool(webhook) + bool(forward_sip_to) > 1:
            batch.problems.append(FieldViolation(f"line {line}", "set one of aor_link, webhook or forward_sip_to"))
        elif aor_link:
            item.aor_link = aor_link
        elif forward_sip_to:
            item.forward_sip_to = forward_sip_to
        elif webhook:
            item.ingress_info.webhook = webhook

    # --- sending -----------------------------------------------------------------------------

    def check(self, batch: _Batch) -> None:
        """Raises InvalidArgumentError for rows of the batch that cannot be sent as they are."""
        if batch.problems:
            summary = "; ".join(f"{v.field}: {v.description}" for v in batch.problems)
            raise InvalidArgumentError(
                grpc.StatusCode.INVALID_ARGUMENT, self._stopped(batch, summary), tuple(batch.problems)
            )

    def done(self, batch: _Batch, response: pb.BatchCreateNumbersResponse) -> None:
        self.rows += len(response.numbers)
        self.batches_sent += 1
        self._advance(batch.bytes_read)

    def _advance(self, bytes_read: int) -> None:
        """Redraws the bar (tqdm draws at most ten times a second), once a batch: never once a row."""
        seconds = time.monotonic() - self.started
        rate = self.rows / seconds if seconds > 0 else 0.0
        self.bar.set_postfix_str(f"{self.rows:,} rows, {rate:,.0f} rows/s", refresh=False)
        self.bar.update(bytes_read - self.bar.n)

    def failed(self, batch: _Batch, error: VoxplaneError) -> VoxplaneError:
        """The error of a batch the server refused, with `requests[i]` named by the file's line."""

        def line_of(match: re.Match[str]) -> str:
            index, field = int(match.group(1)), match.group(2)
            where = f"line {batch.lines[index]}" if index < len(batch.lines) else match.group(0)
            return f"{where}, {_COLUMN_OF_FIELD.get(field, field)}" if field else where

        violations = tuple(
            FieldViolation(_ITEM.sub(line_of, v.field), _ITEM.sub(line_of, v.description))
            for v in error.field_violations
        )
        message = self._stopped(batch, _ITEM.sub(line_of, error.message), error.code)
        return type(error)(error.code, message, violations)

    def _stopped(self, batch: _Batch, what: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> str:
        first, last = batch.lines[0], batch.lines[-1]
        outcome = "nothing of them was" if code in _REFUSED else "they may or may not have been"
        return (
            f"{self.path}: {what.rstrip('.')}. Lines {first}-{last} were one batch: {outcome} imported; the "
            f"{self.rows:,} rows before line {first} were. Fix what is wrong and run the import again: rows "
            "imported already are not created twice."
        )

    def summary(self) -> ImportSummary:
        self._advance(self.size)  # drawn in full when the bar closes
        return ImportSummary(self.rows, self.batches_sent, time.monotonic() - self.started)


def import_csv(client: Any, path: str | os.PathLike[str], *, batch_size: int, progress: bool | None) -> ImportSummary:
    """The blocking import: a reading thread prepares the next batch while this one is sent."""
    with CsvImport(path, batch_size, progress) as job, ThreadPoolExecutor(1, thread_name_prefix="csv") as reader:
        upcoming = reader.submit(job.next_batch)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(job.next_batch)
            job.check(batch)
            try:
                response = client.batch_create_numbers(batch.request)
            except VoxplaneError as error:
                raise job.failed(batch, error) from error
            job.done(batch, response)
        return job.summary()


async def import_csv_async(
    client: Any, path: str | os.PathLike[str], *, batch_size: int, progress: bool | None
) -> ImportSummary:
    """The asyncio import: the file is read on a thread, so the event loop never waits on it."""
    with CsvImport(path, batch_size, progress) as job:
        upcoming = asyncio.ensure_future(asyncio.to_thread(job.next_batch))
        try:
            while (batch := await upcoming) is not None:
                upcoming = asyncio.ensure_future(asyncio.to_thread(job.next_batch))
                job.check(batch)
                try:
                    response = await client.batch_create_numbers(batch.request)
                except VoxplaneError as error:
                    raise job.failed(batch, error) from error
                job.done(batch, response)
            return job.summary()
        finally:
            await asyncio.gather(upcoming, return_exceptions=True)  # the reading thread, before the file closes
