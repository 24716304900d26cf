"""The outbox's read order: a reader resuming from the last position it saw misses nothing and repeats
nothing, even when transactions commit in another order than their rows' ids were assigned."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from voxplane.services.core import workspaces
from voxplane.services.events import outbox
from voxplane.services.persistence.base import utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.migrate import upgrade

from .conftest import postgres_database


@pytest.fixture
def workspace_id(db: Database) -> int:
    return db.transaction(lambda s: workspaces.create_workspace(s, f"ws-{secrets.token_hex(6)}").id, write=True)


def new_event(workspace_id: int, resource: str, sequence: int = 1) -> outbox.NewEvent:
    return outbox.NewEvent(
        workspace_id=workspace_id, topic="call", resource_ref=resource, sequence=sequence, type="NEW_CALL",
        network_time=utcnow(), direction="OUTBOUND", webhook=None, payload={"source": "+15005550001"},
    )


def read_all(db: Database, workspace_id: int, after: outbox.Position) -> tuple[list[str], outbox.Position]:
    def read(session: Session) -> tuple[list[str], outbox.Position]:
        rows, position = outbox.read(session, after, limit=100, workspace_id=workspace_id)
        return [row.resource_ref for row in rows], position

    return db.transaction(read, write=False)


def read_some(db: Database, workspace_id: int, after: outbox.Position) -> tuple[list[str], outbox.Position]:
    """`read_all`, waiting (up to 30 s) for a transaction running elsewhere on a PostgreSQL server, in
    another test's database, to stop holding the horizon back (transaction ids are the server's)."""
    deadline = time.monotonic() + 30
    while not (found := read_all(db, workspace_id, after))[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_a_reader_resumes_after_what_it_saw(db: Database, workspace_id: int) -> None:
    db.transaction(lambda s: outbox.append(s, [new_event(workspace_id, "a"), new_event(workspace_id, "b")]), write=True)
    seen, position = read_some(db, workspace_id, outbox.START)
    assert seen == ["a", "b"]
    again, idle = read_all(db, workspace_id, position)
    assert again == [] and idle >= position
    db.transaction(lambda s: outbox.append(s, [new_event(workspace_id, "c")]), write=True)
    assert read_some(db, workspace_id, position)[0] == ["c"]


def test_an_idle_reader_moves_on_without_skipping_what_comes_next(db: Database, workspace_id: int) -> None:
    _, idle = read_all(db, workspace_id, outbox.START)
    assert idle > outbox.START or db.is_sqlite  # an empty SQLite outbox has nothing to pass
    db.transaction(lambda s: outbox.append(s, [new_event(workspace_id, "late")]), write=True)
    # On PostgreSQL a transaction still running anywhere on the server (another test's, in another
    # database: transaction ids are the server's) holds the horizon back for as long as it runs.
    deadline = time.monotonic() + 30
    while not (seen := read_all(db, workspace_id, idle)[0]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == ["late"]


def test_a_transaction_that_commits_late_is_not_skipped(db: Database, workspace_id: int) -> None:
    """The lower id commits second: a plain id cursor would have moved past it."""
    if db.is_sqlite:
        pytest.skip("SQLite's writers take turns: ids are assigned in commit order")
    early = Session(db.writer)
    early.begin()
    outbox.append(early, [new_event(workspace_id, "first-id-last-commit")])
    early.flush()
    db.transaction(lambda s: outbox.append(s, [new_event(workspace_id, "second-id-first-commit")]), write=True)
    # While the earlier transaction runs, neither is final: a reader sees nothing, and its position
    # stays behind both.
    seen, position = read_all(db, workspace_id, outbox.START)
    assert seen == []
    early.commit()
    early.close()
    seen, _ = read_all(db, workspace_id, position)
    assert sorted(seen) == ["first-id-last-commit", "second-id-first-commit"]


@pytest.fixture
def own_db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    """A database of the test's backend that no other test (nor the test server) uses: pruning there
    deletes no one else's events."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'outbox.db'}"
        upgrade(url)
        database = Database(url, threads=1)
        yield database
        database.close()
        return
    with postgres_database() as fresh:
        database = Database(fresh.url, threads=1)
        yield database
        database.close()


def test_latest_sequence_and_prune(own_db: Database) -> None:
    db = own_db
    workspace_id = db.transaction(lambda s: workspaces.create_workspace(s, "w").id, write=True)
    db.transaction(
        lambda s: outbox.append(s, [new_event(workspace_id, "r", 1), new_event(workspace_id, "r", 2)]), write=True
    )
    assert db.transaction(lambda s: outbox.latest_sequence(s, "call", ["r", "none"]), write=False) == {"r": 2}
    _, position = read_all(db, workspace_id, outbox.START)
    assert db.transaction(lambda s: outbox.prune(s, utcnow()), write=True) == 2
    assert db.transaction(lambda s: outbox.latest_sequence(s, "call", ["r"]), write=False) == {}
    # Every event pruned: the next one still comes after every position handed out (SQLite reuses
    # the ids above the highest row left unless the table says AUTOINCREMENT).
    db.transaction(lambda s: outbox.append(s, [new_event(workspace_id, "after-prune")]), write=True)
    assert read_all(db, workspace_id, position)[0] == ["after-prune"]
