"""The tables stock Kamailio 5.6 reads and writes in voxplane's database, in the shapes its own schema
(kamdbctl's `standard`, `usrloc`) gives them, so its modules' version checks and queries find what they
expect. Agents' credentials reach Kamailio through the `sip_subscribers` view (migration 0001), not a
table of their own: a view cannot fall out of step with the agents it is read from.
"""

from __future__ import annotations

from sqlalchemy import REAL, TIMESTAMP, VARCHAR, Column, Index, Integer, Table, UniqueConstraint, text

from ..persistence.base import Base

# Each table's schema version, which Kamailio's modules check at start (migration 0013 fills it in).
version = Table(
    "version",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("table_name", VARCHAR(32), nullable=False),
    Column("table_version", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("table_name", name="version_table_name_idx"),
)

# usrloc's registrations (Kamailio runs it with db_mode 3, the database alone): one row per contact
# an agent registered, by AOR `username@domain`.
location = Table(
    "location",
    Base.metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ruid", VARCHAR(64), nullable=False, server_default=""),
    Column("username", VARCHAR(64), nullable=False, server_default=""),
    Column("domain", VARCHAR(253)),
    Column("contact", VARCHAR(512), nullable=False, server_default=""),
    Column("received", VARCHAR(128)),
    Column("path", VARCHAR(512)),
    Column("expires", TIMESTAMP, nullable=False, server_default="2030-05-28 21:32:15"),
    Column("q", REAL, nullable=False, server_default=text("1.0")),
    Column("callid", VARCHAR(255), nullable=False, server_default="Default-Call-ID"),
    Column("cseq", Integer, nullable=False, server_default=text("1")),
    Column("last_modified", TIMESTAMP, nullable=False, server_default="2000-01-01 00:00:01"),
    Column("flags", Integer, nullable=False, server_default=text("0")),
    Column("cflags", Integer, nullable=False, server_default=text("0")),
    Column("user_agent", VARCHAR(255), nullable=False, server_default=""),
    Column("socket", VARCHAR(64)),
    Column("methods", Integer),
    Column("instance", VARCHAR(255)),
    Column("reg_id", Integer, nullable=False, server_default=text("0")),
    Column("server_id", Integer, nullable=False, server_default=text("0")),
    Column("connection_id", Integer, nullable=False, server_default=text("0")),
    Column("keepalive", Integer, nullable=False, server_default=text("0")),
    Column("partition", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("ruid", name="location_ruid_idx"),
    Index("location_account_contact_idx", "username", "domain", "contact"),
    Index("location_expires_idx", "expires"),
    Index("location_tcpcon_idx", "connection_id"),
    Index("location_connection_idx", "server_id", "connection_id"),
)
