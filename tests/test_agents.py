"""Agents over a real channel: every RPC's success and failure paths, the stored digests, tenancy."""

from __future__ import annotations

import asyncio
import hashlib
import secrets

import pytest
from sqlalchemy import select, text

from voxplane import (
    AbortedError,
    Agents,
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from voxplane.agents.v1 import agents_pb2 as pb
from voxplane.services.agents.models import Agent, AgentCredential
from voxplane.services.core import workspaces
from voxplane.services.core.auth import Role
from voxplane.services.persistence.tenancy import Workspace


def fresh_domain() -> str:
    """A SIP domain no other test uses, so usernames never collide across tests."""
    return f"sip-{secrets.token_hex(4)}.example.com"


def fresh_secret() -> str:
    return f"Secret-{secrets.token_hex(8)}"


def create(agents: Agents, **fields):  # type: ignore[no-untyped-def]
    request = {"name": "John Doe", "username": "john", "secret": fresh_secret(), "domains": [fresh_domain()], **fields}
    return agents.create_agent(request)


def fields_of(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


def md5(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def credentials(db, ref: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The stored credential rows of agent `ref`, by domain, every column included."""
    columns = AgentCredential.__table__.columns

    def read(session):  # type: ignore[no-untyped-def]
        rows = session.scalars(select(AgentCredential).join(Agent).where(Agent.ref == ref)).all()
        return [{c.key: getattr(row, c.key) for c in columns} for row in rows]

    rows = db.transaction(read, write=False)
    by_domain = {row["domain"]: row for row in rows}
    assert len(by_domain) == len(rows), "one row per domain"
    return by_domain


def credentials_for(db, username: str, domain: str) -> list[dict]:  # type: ignore[no-untyped-def]
    def read(session):  # type: ignore[no-untyped-def]
        rows = session.scalars(
            select(AgentCredential).where(AgentCredential.username == username, AgentCredential.domain == domain)
        ).all()
        return [{"agent_id": r.agent_id, "ha1": r.ha1} for r in rows]

    return db.transaction(read, write=False)


def subscribers(db, username: str, domain: str) -> list:  # type: ignore[no-untyped-def]
    """Rows the SIP proxy sees in the `sip_subscribers` view."""
    query = text(
        "SELECT username, domain, ha1, ha1b, ha1_sha256, ha1b_sha256 FROM sip_subscribers"
        " WHERE username = :username AND domain = :domain"
    )
    return db.transaction(lambda s: s.execute(query, {"username": username, "domain": domain}).all(), write=False)


def expected_digests(username: str, domain: str, secret: str) -> dict[str, str]:
    return {
        "ha1": md5(f"{username}:{domain}:{secret}"),
        "ha1b": md5(f"{username}@{domain}:{domain}:{secret}"),
        "ha1_sha256": sha256(f"{username}:{domain}:{secret}"),
        "ha1b_sha256": sha256(f"{username}@{domain}:{domain}:{secret}"),
    }


def assert_digests(row: dict, username: str, domain: str, secret: str) -> None:
    assert row["username"] == username
    assert row["domain"] == domain
    assert {k: row[k] for k in ("ha1", "ha1b", "ha1_sha256", "ha1b_sha256")} == expected_digests(
        username, domain, secret
    )


def insert_agents(db, tenant, count: int) -> None:  # type: ignore[no-untyped-def]
    """Many agents straight into the table, for paging tests that need more than a page of 1000."""

    def insert(session):  # type: ignore[no-untyped-def]
        workspace_id = session.scalar(select(Workspace.id).where(Workspace.ref == tenant.ref))
        session.add_all(Agent(workspace_id=workspace_id, username=f"bulk{i}") for i in range(count))

    db.transaction(insert, write=True)


# --- CreateAgent ---------------------------------------------------------------------------------


def test_create_returns_the_agent_with_defaults(tenant):
    tag = secrets.token_hex(4)
    with tenant.agents() as agents:
        agent = agents.create_agent(
            name="John Doe",
            username="john",
            secret=fresh_secret(),
            domains=[f"SIP-{tag}.Example.COM", f"sip-{tag}.example.com", f"b-{tag}.example.com"],
        )
        assert agent.ref
        assert agent.name == "John Doe"
        assert agent.username == "john"
        assert agent.privacy == pb.PRIVACY_NONE
        assert list(agent.domains) == [f"sip-{tag}.example.com", f"b-{tag}.example.com"]
        assert agent.enabled is True
        assert agent.create_time.seconds > 0
        assert agent.update_time.ToDatetime() >= agent.create_time.ToDatetime()
        assert agent.etag
        assert agents.get_agent(agent.ref) == agent


def test_create_keeps_explicit_privacy_and_enabled(tenant):
    with tenant.agents() as agents:
        agent = create(agents, privacy="PRIVACY_PRIVATE", enabled=False)
        assert agent.privacy == pb.PRIVACY_PRIVATE
        assert agent.enabled is False
        assert agents.get_agent(agent.ref).enabled is False


def test_secret_never_appears_in_any_response(tenant):
    secret = fresh_secret()
    new_secret = fresh_secret()
    with tenant.agents() as agents:
        created = create(agents, secret=secret)
        responses = [
            created,
            agents.get_agent(created.ref),
            agents.update_agent(ref=created.ref, name="Renamed"),
            agents.update_agent(ref=created.ref, secret=new_secret),
            agents.list_agents(),
        ]
    for response in responses:
        raw = response.SerializeToString()
        assert secret.encode() not in raw
        assert new_secret.encode() not in raw


def test_stored_credentials_are_digests_one_row_per_domain(tenant, db):
    secret = fresh_secret()
    domains = [fresh_domain(), fresh_domain()]
    with tenant.agents() as agents:
        agent = create(agents, username="alice", secret=secret, domains=domains)
    rows = credentials(db, agent.ref)
    assert sorted(rows) == sorted(domains)
    for domain in domains:
        assert_digests(rows[domain], "alice", domain, secret)


def test_plain_secret_is_stored_nowhere(tenant, db):
    secret = fresh_secret()
    with tenant.agents() as agents:
        agent = create(agents, secret=secret, domains=[fresh_domain(), fresh_domain()])

    def agent_row(session):  # type: ignore[no-untyped-def]
        row = session.scalar(select(Agent).where(Agent.ref == agent.ref))
        return {c.key: getattr(row, c.key) for c in Agent.__table__.columns}

    stored = [*credentials(db, agent.ref).values(), db.transaction(agent_row, write=False)]
    values = [str(value) for row in stored for value in row.values()]
    assert len(values) > 10
    assert not [v for v in values if secret in v]


def test_sip_subscribers_view_serves_enabled_agents_only(tenant, db):
    on_domain, off_domain = fresh_domain(), fresh_domain()
    secret = fresh_secret()
    with tenant.agents() as agents:
        create(agents, username="on", secret=secret, domains=[on_domain])
        create(agents, username="off", domains=[off_domain], enabled=False)
    [row] = subscribers(db, "on", on_domain)
    assert row.ha1 == md5(f"on:{on_domain}:{secret}")
    assert row.ha1b == md5(f"on@{on_domain}:{on_domain}:{secret}")
    assert subscribers(db, "off", off_domain) == []
    assert len(credentials_for(db, "off", off_domain)) == 1  # stored, just not served


def test_username_of_64_characters_and_secret_of_8_are_accepted(tenant):
    with tenant.agents() as agents:
        agent = create(agents, username="a" * 64, secret="12345678")
        assert agent.username == "a" * 64


def test_username_may_hold_every_rfc3261_user_character(tenant):
    username = "Az09-_.!~*'()&=+$,;?/"
    with tenant.agents() as agents:
        assert create(agents, username=username).username == username


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"username": ""}, {"username"}),
        ({"username": "jo:hn"}, {"username"}),
        ({"username": "jo@hn"}, {"username"}),
        ({"username": "jo hn"}, {"username"}),
        ({"username": "a" * 65}, {"username"}),
        ({"secret": ""}, {"secret"}),
        ({"secret": "1234567"}, {"secret"}),
        ({"secret": "x" * 129}, {"secret"}),
        ({"domains": []}, {"domains"}),
        ({"domains": ["bad_domain!"]}, {"domains[0]"}),
        ({"domains": ["ok.example.com", "-x.com"]}, {"domains[1]"}),
        ({"domains": ["x.example.com.."]}, {"domains[0]"}),
        ({"domains": ["."]}, {"domains[0]"}),
        ({"domains": ["a..example.com"]}, {"domains[0]"}),
        ({"domains": [f"d{i}.example.com" for i in range(21)]}, {"domains"}),
        ({"privacy": 7}, {"privacy"}),
        ({"name": "n" * 256}, {"name"}),
        ({"request_id": "r" * 129}, {"request_id"}),
    ],
    ids=lambda value: str(value)[:40],
)
def test_create_rejects_invalid_fields(tenant, fields, bad):
    with tenant.agents() as agents, pytest.raises(InvalidArgumentError) as caught:
        create(agents, **fields)
    assert fields_of(caught.value) == bad


def test_create_reports_every_invalid_field_at_once_and_creates_nothing(tenant):
    with tenant.agents() as agents:
        with pytest.raises(InvalidArgumentError) as caught:
            create(agents, username="jo hn", secret="short", domains=["good.example.com", "bad_domain!"], privacy=7)
        assert fields_of(caught.value) == {"username", "secret", "domains[1]", "privacy"}
        assert "bad_domain!" in caught.value.message
        assert list(agents.list_agents().agents) == []


# --- uniqueness ----------------------------------------------------------------------------------


def test_same_username_in_the_same_domain_is_already_exists(tenant, db):
    domain = fresh_domain()
    with tenant.agents() as agents:
        first = create(agents, username="bob", domains=[domain])
        with pytest.raises(AlreadyExistsError) as caught:
            create(agents, username="bob", domains=[domain.upper()])
        assert domain in caught.value.message
        assert [a.ref for a in agents.list_agents().agents] == [first.ref]
    assert len(credentials_for(db, "bob", domain)) == 1


def test_same_username_in_the_same_domain_of_another_workspace_is_already_exists(tenant, other_tenant):
    domain = fresh_domain()
    with tenant.agents() as agents:
        create(agents, username="bob", domains=[domain])
    with other_tenant.agents() as agents:
        with pytest.raises(AlreadyExistsError):
            create(agents, username="bob", domains=[domain])
        assert list(agents.list_agents().agents) == []


def test_a_trailing_dot_names_the_same_domain(tenant, other_tenant):
    domain = fresh_domain()
    with tenant.agents() as agents:
        agent = create(agents, username="bob", domains=[f"{domain}.", domain])
        assert list(agent.domains) == [domain]
    with other_tenant.agents() as agents, pytest.raises(AlreadyExistsError):
        create(agents, username="bob", domains=[f"{domain.upper()}."])


def test_a_collision_in_one_domain_creates_nothing_in_the_others(tenant, db):
    taken, free = fresh_domain(), fresh_domain()
    with tenant.agents() as agents:
        create(agents, username="bob", domains=[taken])
        with pytest.raises(AlreadyExistsError):
            create(agents, username="bob", domains=[free, taken])
        assert len(agents.list_agents().agents) == 1
    assert credentials_for(db, "bob", free) == []


def test_same_username_in_another_domain_is_fine(tenant, other_tenant):
    with tenant.agents() as agents:
        first = create(agents, username="bob")
        second = create(agents, username="bob")
    with other_tenant.agents() as agents:
        third = create(agents, username="bob")
    assert len({first.ref, second.ref, third.ref}) == 3


# --- GetAgent ------------------------------------------------------------------------------------


def test_get_unknown_ref_is_not_found(tenant):
    with tenant.agents() as agents, pytest.raises(NotFoundError):
        agents.get_agent("0123456789abcdef")


def test_get_empty_ref_is_invalid_argument(tenant):
    with tenant.agents() as agents, pytest.raises(InvalidArgumentError) as caught:
        agents.get_agent("")
    assert fields_of(caught.value) == {"ref"}


# --- UpdateAgent ---------------------------------------------------------------------------------


def test_partial_update_leaves_other_fields_alone(tenant, db):
    with tenant.agents() as agents:
        before = create(agents, privacy="PRIVACY_PRIVATE", domains=[fresh_domain(), fresh_domain()])
        digests_before = credentials(db, before.ref)
        after = agents.update_agent(ref=before.ref, name="Jane Roe")
        assert after.name == "Jane Roe"
        for field in ("ref", "username", "privacy", "domains", "enabled", "create_time"):
            assert getattr(after, field) == getattr(before, field), field
        assert after.update_time.ToDatetime() >= before.update_time.ToDatetime()
        assert after.etag != before.etag
        assert agents.get_agent(before.ref) == after
    assert credentials(db, before.ref) == digests_before


def test_update_privacy_alone(tenant):
    with tenant.agents() as agents:
        before = create(agents)
        after = agents.update_agent(ref=before.ref, privacy="PRIVACY_PRIVATE")
        assert after.privacy == pb.PRIVACY_PRIVATE
        assert after.name == before.name


def test_update_can_set_false_and_refuses_to_clear_the_domains(tenant):
    with tenant.agents() as agents:
        before = create(agents)
        disabled = agents.update_agent(ref=before.ref, enabled=False)  # a default value, named by the mask
        assert not disabled.enabled and disabled.name == before.name
        with pytest.raises(InvalidArgumentError) as caught:
            agents.update_agent(ref=before.ref, domains=[], secret="another-secret-1")
        assert fields_of(caught.value) == {"domains"}
        with pytest.raises(InvalidArgumentError) as caught:
            agents.update_agent(ref=before.ref, name="x", update_mask="name,ref")
        assert fields_of(caught.value) == {"update_mask"}


def test_update_with_current_etag_succeeds_and_stale_etag_is_aborted(tenant):
    with tenant.agents() as agents:
        agent = create(agents)
        updated = agents.update_agent(ref=agent.ref, name="First", etag=agent.etag)
        assert updated.etag != agent.etag
        with pytest.raises(AbortedError):
            agents.update_agent(ref=agent.ref, name="Second", etag=agent.etag)
        assert agents.get_agent(agent.ref).name == "First"


@pytest.mark.parametrize("change", ["username", "domains"])
def test_changing_identity_without_secret_is_invalid_argument(tenant, db, change):
    with tenant.agents() as agents:
        agent = create(agents)
        request = {"username": "someone-else"} if change == "username" else {"domains": [fresh_domain()]}
        with pytest.raises(InvalidArgumentError) as caught:
            agents.update_agent(ref=agent.ref, **request)
        assert fields_of(caught.value) == {"secret"}
        assert agents.get_agent(agent.ref) == agent
    assert list(credentials(db, agent.ref)) == list(agent.domains)


def test_unchanged_username_and_domains_need_no_secret(tenant):
    with tenant.agents() as agents:
        agent = create(agents, domains=[fresh_domain(), fresh_domain()])
        updated = agents.update_agent(ref=agent.ref, username=agent.username, domains=list(agent.domains), name="X")
        assert updated.name == "X"


def test_rename_with_secret_recomputes_digests(tenant, db):
    domain = fresh_domain()
    secret = fresh_secret()
    with tenant.agents() as agents:
        agent = create(agents, username="old", domains=[domain])
        updated = agents.update_agent(ref=agent.ref, username="new", secret=secret)
        assert updated.username == "new"
        assert list(updated.domains) == [domain]
    rows = credentials(db, agent.ref)
    assert list(rows) == [domain]
    assert_digests(rows[domain], "new", domain, secret)
    assert credentials_for(db, "old", domain) == []


def test_rename_to_a_username_taken_in_the_domain_is_already_exists(tenant, db):
    domain = fresh_domain()
    secret = fresh_secret()
    with tenant.agents() as agents:
        create(agents, username="taken", domains=[domain])
        agent = create(agents, username="mine", secret=secret, domains=[domain])
        with pytest.raises(AlreadyExistsError) as caught:
            agents.update_agent(ref=agent.ref, username="taken", secret=fresh_secret())
        assert "taken" in caught.value.message
        assert agents.get_agent(agent.ref) == agent
    assert_digests(credentials(db, agent.ref)[domain], "mine", domain, secret)
    assert len(credentials_for(db, "taken", domain)) == 1


def test_moving_into_a_domain_where_the_username_is_taken_is_already_exists(tenant, db):
    mine, theirs = fresh_domain(), fresh_domain()
    with tenant.agents() as agents:
        create(agents, username="bob", domains=[theirs])
        agent = create(agents, username="bob", domains=[mine])
        with pytest.raises(AlreadyExistsError):
            agents.update_agent(ref=agent.ref, domains=[mine, theirs], secret=fresh_secret())
        assert list(agents.get_agent(agent.ref).domains) == [mine]
    assert list(credentials(db, agent.ref)) == [mine]


def test_replacing_domains_with_an_overlapping_set(tenant, db):
    a, b, c = fresh_domain(), fresh_domain(), fresh_domain()
    secret = fresh_secret()
    with tenant.agents() as agents:
        agent = create(agents, username="carol", domains=[a, b])
        updated = agents.update_agent(ref=agent.ref, domains=[b, c.upper()], secret=secret)
        assert list(updated.domains) == [b, c]
        assert agents.get_agent(agent.ref) == updated
    rows = credentials(db, agent.ref)
    assert sorted(rows) == sorted([b, c])
    for domain in (b, c):
        assert_digests(rows[domain], "carol", domain, secret)


def test_disabling_hides_the_agent_from_the_sip_proxy(tenant, db):
    domain = fresh_domain()
    with tenant.agents() as agents:
        agent = create(agents, username="dave", domains=[domain])
        assert len(subscribers(db, "dave", domain)) == 1
        updated = agents.update_agent(ref=agent.ref, enabled=False)
        assert updated.enabled is False
        assert updated.etag != agent.etag
        assert agents.get_agent(agent.ref).enabled is False
        assert subscribers(db, "dave", domain) == []
        assert agents.update_agent(ref=agent.ref, enabled=True).enabled is True
    assert len(subscribers(db, "dave", domain)) == 1


def test_secret_only_update_changes_digests_and_etag(tenant, db):
    domains = [fresh_domain(), fresh_domain()]
    new_secret = fresh_secret()
    with tenant.agents() as agents:
        agent = create(agents, username="erin", domains=domains)
        before = credentials(db, agent.ref)
        updated = agents.update_agent(ref=agent.ref, secret=new_secret)
        assert updated.etag != agent.etag
        assert list(updated.domains) == domains
        assert updated.username == "erin"
    after = credentials(db, agent.ref)
    for domain in domains:
        assert after[domain]["ha1"] != before[domain]["ha1"]
        assert_digests(after[domain], "erin", domain, new_secret)


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"privacy": "PRIVACY_UNSPECIFIED"}, {"privacy"}),
        ({"privacy": 7}, {"privacy"}),
        ({"username": "jo:hn", "secret": "long-enough"}, {"username"}),
        ({"secret": "short"}, {"secret"}),
        ({"domains": ["bad_domain!"], "secret": "long-enough"}, {"domains[0]"}),
        ({"name": "n" * 256}, {"name"}),
    ],
    ids=lambda value: str(value)[:40],
)
def test_update_rejects_invalid_fields(tenant, fields, bad):
    with tenant.agents() as agents:
        agent = create(agents)
        with pytest.raises(InvalidArgumentError) as caught:
            agents.update_agent(ref=agent.ref, **fields)
        assert fields_of(caught.value) == bad
        assert agents.get_agent(agent.ref) == agent


def test_update_unknown_ref_is_not_found_and_empty_ref_invalid(tenant):
    with tenant.agents() as agents:
        with pytest.raises(NotFoundError):
            agents.update_agent(ref="0123456789abcdef", name="x")
        with pytest.raises(InvalidArgumentError) as caught:
            agents.update_agent(ref="", name="x")
        assert fields_of(caught.value) == {"ref"}


# --- DeleteAgent ---------------------------------------------------------------------------------


def test_delete_removes_the_agent_and_its_credentials(tenant, db):
    domains = [fresh_domain(), fresh_domain()]
    with tenant.agents() as agents:
        agent = create(agents, username="frank", domains=domains)
        assert isinstance(agents.delete_agent(agent.ref), pb.DeleteAgentResponse)
        with pytest.raises(NotFoundError):
            agents.get_agent(agent.ref)
        assert list(agents.list_agents().agents) == []
    assert credentials(db, agent.ref) == {}
    for domain in domains:
        assert credentials_for(db, "frank", domain) == []


def test_second_delete_is_not_found(tenant):
    with tenant.agents() as agents:
        agent = create(agents)
        agents.delete_agent(agent.ref)
        with pytest.raises(NotFoundError):
            agents.delete_agent(agent.ref)


def test_delete_with_stale_etag_is_aborted_and_with_current_etag_succeeds(tenant):
    with tenant.agents() as agents:
        agent = create(agents)
        updated = agents.update_agent(ref=agent.ref, name="changed")
        with pytest.raises(AbortedError):
            agents.delete_agent(ref=agent.ref, etag=agent.etag)
        assert agents.get_agent(agent.ref) == updated
        agents.delete_agent(ref=agent.ref, etag=updated.etag)
        with pytest.raises(NotFoundError):
            agents.get_agent(agent.ref)


def test_delete_empty_ref_is_invalid_argument(tenant):
    with tenant.agents() as agents, pytest.raises(InvalidArgumentError) as caught:
        agents.delete_agent("")
    assert fields_of(caught.value) == {"ref"}


def test_username_can_be_reused_after_delete(tenant, other_tenant, db):
    domain = fresh_domain()
    secret = fresh_secret()
    with tenant.agents() as agents:
        agents.delete_agent(create(agents, username="gina", domains=[domain]).ref)
    with other_tenant.agents() as agents:
        again = create(agents, username="gina", secret=secret, domains=[domain])
    assert_digests(credentials(db, again.ref)[domain], "gina", domain, secret)


# --- ListAgents ----------------------------------------------------------------------------------


def test_list_pages_walk_every_agent_in_creation_order(tenant):
    with tenant.agents() as agents:
        refs = [create(agents, username=f"user{i}").ref for i in range(5)]
        seen, sizes, token = [], [], ""
        for _ in range(5):
            page = agents.list_agents(page_size=2, page_token=token)
            seen += [a.ref for a in page.agents]
            sizes.append(len(page.agents))
            token = page.next_page_token
            if not token:
                break
        assert seen == refs
        assert sizes == [2, 2, 1]


def test_list_of_an_exact_page_has_no_next_token(tenant):
    with tenant.agents() as agents:
        for i in range(2):
            create(agents, username=f"user{i}")
        page = agents.list_agents(page_size=2)
        assert len(page.agents) == 2
        assert page.next_page_token == ""


def test_list_of_an_empty_workspace(tenant):
    with tenant.agents() as agents:
        page = agents.list_agents()
        assert list(page.agents) == []
        assert page.next_page_token == ""


def test_list_negative_page_size_is_invalid_argument(tenant):
    with tenant.agents() as agents, pytest.raises(InvalidArgumentError) as caught:
        agents.list_agents(page_size=-1)
    assert fields_of(caught.value) == {"page_size"}


def first_page_token(agents: Agents) -> str:
    for i in range(2):
        create(agents, username=f"user{i}")
    token = agents.list_agents(page_size=1).next_page_token
    assert token
    return token


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: ("B" if t[0] != "B" else "C") + t[1:],  # the first character carries six signed bits
        lambda t: t[:-4],
        lambda t: t + "AAAA",
        lambda t: "not-a-token",
        lambda t: "%%%",
    ],
    ids=["flipped", "truncated", "extended", "garbage", "not-base64"],
)
def test_list_tampered_token_is_invalid_argument(tenant, tamper):
    with tenant.agents() as agents:
        token = first_page_token(agents)
        with pytest.raises(InvalidArgumentError) as caught:
            agents.list_agents(page_size=1, page_token=tamper(token))
        assert fields_of(caught.value) == {"page_token"}


def test_list_token_of_another_workspace_is_invalid_argument(tenant, other_tenant):
    with tenant.agents() as agents:
        token = first_page_token(agents)
    with other_tenant.agents() as agents:
        create(agents)
        with pytest.raises(InvalidArgumentError) as caught:
            agents.list_agents(page_size=1, page_token=token)
        assert fields_of(caught.value) == {"page_token"}


def test_list_token_of_the_numbers_list_is_invalid_argument(tenant, fresh_e164):
    with tenant.numbers() as numbers:
        for _ in range(2):
            numbers.create_number(provider_ref="trunk-1", e164_number=fresh_e164(), aor_link="sip:1001@sip.local")
        token = numbers.list_numbers(page_size=1).next_page_token
    assert token
    with tenant.agents() as agents:
        for i in range(3):
            create(agents, username=f"user{i}")
        with pytest.raises(InvalidArgumentError) as caught:
            agents.list_agents(page_size=1, page_token=token)
        assert fields_of(caught.value) == {"page_token"}


def test_list_continues_after_the_last_seen_agent_is_deleted(tenant):
    with tenant.agents() as agents:
        refs = [create(agents, username=f"user{i}").ref for i in range(4)]
        page = agents.list_agents(page_size=2)
        assert [a.ref for a in page.agents] == refs[:2]
        agents.delete_agent(refs[1])
        rest = agents.list_agents(page_size=2, page_token=page.next_page_token)
        assert [a.ref for a in rest.agents] == refs[2:]


def test_list_default_page_size_is_20(tenant, db):
    insert_agents(db, tenant, 21)
    with tenant.agents() as agents:
        page = agents.list_agents()
        assert len(page.agents) == 20
        assert page.next_page_token


def test_list_page_size_above_1000_clamps(tenant, db):
    insert_agents(db, tenant, 1001)
    with tenant.agents() as agents:
        page = agents.list_agents(page_size=5000)
        assert len(page.agents) == 1000
        assert page.next_page_token
        rest = agents.list_agents(page_size=5000, page_token=page.next_page_token)
        assert [a.username for a in rest.agents] == ["bulk1000"]
        assert rest.next_page_token == ""


def test_iter_agents_walks_every_page(tenant):
    with tenant.agents() as agents:
        refs = [create(agents, username=f"user{i}").ref for i in range(5)]
        assert [a.ref for a in agents.iter_agents(page_size=2)] == refs


# --- tenancy and auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda agents, agent: agents.get_agent(agent.ref),
        lambda agents, agent: agents.update_agent(ref=agent.ref, name="mine now"),
        lambda agents, agent: agents.update_agent(ref=agent.ref, secret="hijacked-secret"),
        lambda agents, agent: agents.delete_agent(agent.ref),
        lambda agents, agent: agents.delete_agent(ref=agent.ref, etag=agent.etag),
    ],
    ids=["get", "update", "update-secret", "delete", "delete-with-etag"],
)
def test_another_workspaces_agent_is_not_found(tenant, other_tenant, db, call):
    with tenant.agents() as agents:
        agent = create(agents)
    stored = credentials(db, agent.ref)
    with other_tenant.agents() as intruder, pytest.raises(NotFoundError) as caught:
        call(intruder, agent)
    assert agent.username not in caught.value.message
    with tenant.agents() as agents:
        assert agents.get_agent(agent.ref) == agent
    assert credentials(db, agent.ref) == stored


def test_another_workspace_lists_none_of_the_agents(tenant, other_tenant):
    with tenant.agents() as agents:
        create(agents)
    with other_tenant.agents() as agents:
        assert list(agents.list_agents().agents) == []
        assert list(agents.iter_agents()) == []


def test_reader_key_can_get_and_list(tenant):
    with tenant.agents() as agents:
        agent = create(agents)
    with tenant.agents(Role.READER) as reader:
        assert reader.get_agent(agent.ref) == agent
        assert [a.ref for a in reader.list_agents().agents] == [agent.ref]


@pytest.mark.parametrize(
    "call",
    [
        lambda agents, agent: create(agents),
        lambda agents, agent: agents.update_agent(ref=agent.ref, name="reader was here"),
        lambda agents, agent: agents.delete_agent(agent.ref),
    ],
    ids=["create", "update", "delete"],
)
def test_reader_key_cannot_write(tenant, call):
    with tenant.agents() as agents:
        agent = create(agents)
    with tenant.agents(Role.READER) as reader, pytest.raises(PermissionDeniedError):
        call(reader, agent)
    with tenant.agents() as agents:
        assert list(agents.list_agents().agents) == [agent]


@pytest.mark.parametrize("role", [Role.ADMIN, Role.SERVICE])
def test_admin_and_service_keys_can_write(tenant, role):
    with tenant.agents(role) as agents:
        agent = create(agents)
        agents.delete_agent(agent.ref)


CALLS = {
    "create": lambda agents: create(agents),
    "get": lambda agents: agents.get_agent("0123456789abcdef"),
    "update": lambda agents: agents.update_agent(ref="0123456789abcdef", name="x"),
    "list": lambda agents: agents.list_agents(),
    "delete": lambda agents: agents.delete_agent("0123456789abcdef"),
}


@pytest.mark.parametrize("rpc", list(CALLS))
def test_missing_key_is_unauthenticated(server, monkeypatch, rpc):
    monkeypatch.delenv("VOXPLANE_API_KEY", raising=False)
    with Agents(endpoint=server.address) as agents, pytest.raises(UnauthenticatedError):
        CALLS[rpc](agents)


@pytest.mark.parametrize("rpc", list(CALLS))
def test_unknown_key_is_unauthenticated(server, rpc):
    with Agents(endpoint=server.address, api_key="vxp_00000000_not-a-real-key") as agents:
        with pytest.raises(UnauthenticatedError):
            CALLS[rpc](agents)


def test_revoked_key_is_unauthenticated(tenant, db):
    key = tenant.keys[Role.MEMBER]
    with tenant.agents() as agents:
        create(agents)
        key_id = key.removeprefix("vxp_").split("_", 1)[0]
        db.transaction(lambda s: workspaces.revoke_key(s, key_id), write=True)
        with pytest.raises(UnauthenticatedError):
            agents.list_agents()


# --- idempotency ---------------------------------------------------------------------------------


def test_create_retried_with_the_same_request_id_returns_the_first_agent(tenant, db):
    domain = fresh_domain()
    request_id = secrets.token_hex(8)
    with tenant.agents() as agents:
        first = create(agents, username="henry", domains=[domain], request_id=request_id)
        again = create(agents, username="henry", domains=[domain], request_id=request_id)
        assert again == first
        assert [a.ref for a in agents.list_agents().agents] == [first.ref]
    assert len(credentials_for(db, "henry", domain)) == 1


def test_request_id_is_scoped_to_the_workspace(tenant, other_tenant):
    request_id = secrets.token_hex(8)
    with tenant.agents() as agents:
        mine = create(agents, request_id=request_id)
    with other_tenant.agents() as agents:
        theirs = create(agents, request_id=request_id)
    assert theirs.ref != mine.ref


def test_creates_without_request_id_are_distinct(tenant):
    with tenant.agents() as agents:
        first = create(agents, username="ivy")
        second = create(agents, username="ivy")
        assert first.ref != second.ref


# --- asyncio client ------------------------------------------------------------------------------


def test_async_client_creates_gets_and_iterates(tenant):
    async def scenario() -> None:
        async with tenant.async_agents() as agents:
            created = [await create(agents, username=f"async{i}") for i in range(3)]
            assert await agents.get_agent(created[0].ref) == created[0]
            seen = [agent.ref async for agent in agents.iter_agents(page_size=2)]
            assert seen == [a.ref for a in created]
            with pytest.raises(NotFoundError):
                await agents.get_agent("0123456789abcdef")

    asyncio.run(scenario())
