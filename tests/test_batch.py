"""BatchCreateNumbers, BatchDeleteNumbers and the CSV import over a real channel: all or nothing,
every problem named by its index (or by the file's line), idempotent retries."""

from __future__ import annotations

import asyncio
import csv
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from voxplane import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from voxplane._bulk import ImportSummary
from voxplane.numbers.v1 import numbers_pb2 as pb
from voxplane.services.core.auth import Role
from voxplane.services.numbers.models import Number
from voxplane.services.persistence.base import utcnow


def item(e164: str, **fields):  # type: ignore[no-untyped-def]
    return {"provider_ref": "trunk-1", "e164_number": e164, "aor_link": "sip:1001@sip.local", **fields}


def violated_fields(error: InvalidArgumentError) -> set[str]:
    return {v.field for v in error.field_violations}


def stored(db, e164s) -> int:  # type: ignore[no-untyped-def]
    """How many of these E.164 numbers have a row."""
    query = select(func.count()).select_from(Number).where(Number.e164_number.in_(list(e164s)))
    return db.transaction(lambda s: s.scalar(query), write=False)


# --- BatchCreateNumbers ---------------------------------------------------------------------------


def test_batch_create_returns_every_number_in_order_as_get_number_sees_it(tenant, fresh_e164):
    e164s = [fresh_e164() for _ in range(5)]
    requests = [
        item(f"+1 ({e164s[0][2:5]}) {e164s[0][5:8]}-{e164s[0][8:]}", name="Sales"),
        item(e164s[1], aor_link=None, ingress_info={"webhook": "https://hooks.example.com/v"}),
        item(e164s[2], aor_link=None, forward_sip_to="sip:+442071234567@pbx.example.com"),
        item(e164s[3], porting_in=True, settings={"recording_enabled": True, "caller_id_prefix": "Sales:",
                                                   "caller_id_passthrough": False, "context": "NUMBER_CONTEXT_UTILITY"}),
        item(e164s[4], aor_link=None, ingress_info={"webhook": "https://hooks.example.com/q7"}, request_id="order-1"),
    ]
    requests = [{k: v for k, v in r.items() if v is not None} for r in requests]
    with tenant.numbers() as numbers:
        created = numbers.batch_create_numbers(requests=requests).numbers
        assert [n.e164_number for n in created] == e164s
        assert created[0].name == "Sales"
        assert created[1].ingress_info.webhook == "https://hooks.example.com/v"
        assert created[2].WhichOneof("routing") == "forward_sip_to"
        assert created[3].state == pb.NUMBER_STATE_PORTING_IN
        assert created[3].recording_enabled and not created[3].caller_id_passthrough
        assert created[3].context == pb.NUMBER_CONTEXT_UTILITY
        assert created[0].state == pb.NUMBER_STATE_ACTIVE
        assert created[0].caller_id_passthrough and created[0].context == pb.NUMBER_CONTEXT_INCOMING
        assert len({n.ref for n in created}) == 5
        for number in created:  # the batch's Numbers are the ones every other RPC returns
            assert numbers.get_number(number.ref) == number


def test_the_basic_view_returns_only_what_identifies_each_number(tenant, fresh_e164):
    e164s = [fresh_e164() for _ in range(3)]
    with tenant.numbers() as numbers:
        requests = [item(e, request_id=f"view-{e}") for e in e164s]
        basic = numbers.batch_create_numbers(requests=requests, view=pb.NUMBER_VIEW_BASIC).numbers
        for number, e164 in zip(basic, e164s, strict=True):
            full = numbers.get_number(number.ref)
            assert number == pb.Number(ref=full.ref, e164_number=e164, state=full.state, etag=full.etag)
            assert not number.HasField("classification") and not number.HasField("create_time")
        # A retry with the same request_ids gets the same Numbers, whole when no view is asked for.
        again = numbers.batch_create_numbers(requests=requests).numbers
        assert [n.ref for n in again] == [n.ref for n in basic]
        assert all(n.HasField("classification") and n.HasField("create_time") for n in again)


def test_a_view_the_contract_does_not_define_is_invalid_and_creates_nothing(tenant, fresh_e164, db):
    e164 = fresh_e164()
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.batch_create_numbers(requests=[item(e164)], view=7)
    assert violated_fields(caught.value) == {"view"}
    assert stored(db, [e164]) == 0


def test_a_bad_item_fails_the_whole_batch_and_is_named_by_index(tenant, fresh_e164, db):
    e164s = [fresh_e164() for _ in range(6)]
    requests = [item(e) for e in e164s]
    requests[3]["e164_number"] = "+1785"
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.batch_create_numbers(requests=requests)
    assert violated_fields(caught.value) == {"requests[3].e164_number"}
    assert "requests[3].e164_number" in caught.value.message and "+1785" in caught.value.message
    assert stored(db, e164s) == 0


def test_every_bad_item_and_field_is_named_at_once(tenant, fresh_e164):
    requests = [item(fresh_e164()) for _ in range(7)]
    requests[0]["provider_ref"] = ""
    requests[1]["e164_number"] = "+1785"
    requests[2]["aor_link"] = "http://not-sip.example.com"
    del requests[3]["aor_link"]
    requests[3]["ingress_info"] = {"webhook": "ftp://x.example.com"}
    requests[4]["settings"] = {"caller_id_prefix": "x" * 17}
    requests[5].update(name="n" * 256, request_id="r" * 129)
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.batch_create_numbers(requests=requests)
    assert violated_fields(caught.value) == {
        "requests[0].provider_ref",
        "requests[1].e164_number",
        "requests[2].aor_link",
        "requests[3].ingress_info.webhook",
        "requests[4].settings.caller_id_prefix",
        "requests[5].name",
        "requests[5].request_id",
    }


def test_an_unknown_enum_value_is_named_by_index(tenant, fresh_e164):
    request = pb.BatchCreateNumbersRequest(requests=[pb.CreateNumberRequest(**item(fresh_e164())) for _ in range(3)])
    request.requests[2].settings.context = 9  # a value the contract does not define (open enum)
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.batch_create_numbers(request)
    assert violated_fields(caught.value) == {"requests[2].settings.context"}


def test_an_e164_twice_in_one_batch_is_invalid_on_the_second(tenant, fresh_e164, db):
    e164, other = fresh_e164(), fresh_e164()
    spaced = f"+1 {e164[2:5]} {e164[5:8]} {e164[8:]}"
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.batch_create_numbers(requests=[item(e164), item(other), item(spaced)])
    assert violated_fields(caught.value) == {"requests[2].e164_number"}
    assert "requests[0]" in caught.value.field_violations[0].description
    assert stored(db, [e164, other]) == 0


def test_a_request_id_twice_in_one_batch_is_invalid(tenant, fresh_e164):
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.batch_create_numbers(
            requests=[item(fresh_e164(), request_id="same"), item(fresh_e164(), request_id="same")]
        )
    assert violated_fields(caught.value) == {"requests[1].request_id"}


def test_a_taken_number_is_already_exists_naming_the_first_index(tenant, other_tenant, fresh_e164, db):
    e164s = [fresh_e164() for _ in range(9)]
    with other_tenant.numbers() as theirs:
        theirs.create_number(item(e164s[5]))
        theirs.create_number(item(e164s[7]))
    with tenant.numbers() as numbers, pytest.raises(AlreadyExistsError) as caught:
        numbers.batch_create_numbers(requests=[item(e) for e in e164s])
    assert caught.value.message.startswith(f"requests[5]: The number {e164s[5]} is already provisioned")
    assert other_tenant.ref not in caught.value.message
    assert stored(db, e164s) == 2  # only the other workspace's two
    with tenant.numbers() as numbers:  # the same batch without the taken numbers goes through
        rest = [e for i, e in enumerate(e164s) if i not in (5, 7)]
        assert len(numbers.batch_create_numbers(requests=[item(e) for e in rest]).numbers) == 7


def test_a_retry_with_the_same_request_ids_returns_the_first_numbers(tenant, fresh_e164, db):
    e164s = [fresh_e164() for _ in range(4)]
    requests = [item(e, request_id=f"import-7-{i}") for i, e in enumerate(e164s)]
    with tenant.numbers() as numbers:
        first = numbers.batch_create_numbers(requests=requests).numbers
        again = numbers.batch_create_numbers(requests=requests).numbers
        assert again == first
        # A retry that adds items: the known ones come back, the new one is created.
        extra = fresh_e164()
        grown = numbers.batch_create_numbers(requests=[*requests[:2], item(extra, request_id="import-7-9")]).numbers
        assert [n.ref for n in grown[:2]] == [n.ref for n in first[:2]]
        assert grown[2].e164_number == extra
    assert stored(db, [*e164s, extra]) == 5


def test_concurrent_retries_of_one_batch_create_each_number_once(tenant, fresh_e164, db):
    e164s = [fresh_e164() for _ in range(50)]
    requests = [item(e, request_id=f"race-{i}") for i, e in enumerate(e164s)]

    async def race() -> list[pb.BatchCreateNumbersResponse]:
        async with tenant.async_numbers() as numbers:
            return await asyncio.gather(*(numbers.batch_create_numbers(requests=requests) for _ in range(6)))

    responses = asyncio.run(race())
    assert all(r == responses[0] for r in responses)
    assert stored(db, e164s) == 50


def test_the_client_gives_every_item_a_request_id_so_retries_are_safe():
    from voxplane import Numbers

    method = Numbers.batch_create_numbers
    message = method.build(None, {"requests": [{"e164_number": "+1"}, {"e164_number": "+2", "request_id": "mine"}]})
    assert message.requests[0].request_id and message.requests[1].request_id == "mine"
    assert method.retryable(message)
    assert not method.retryable(pb.BatchCreateNumbersRequest(requests=[pb.CreateNumberRequest()]))


def test_a_lapsed_release_of_a_number_makes_way_for_the_batch(tenant, other_tenant, fresh_e164, db):
    e164 = fresh_e164()
    with other_tenant.numbers() as theirs:
        old = theirs.create_number(item(e164))
    long_ago = utcnow() - timedelta(days=3650)
    db.transaction(
        lambda s: s.execute(
            update(Number).where(Number.ref == old.ref).values(state="RELEASED", release_time=long_ago)
        ),
        write=True,
    )
    with tenant.numbers() as numbers:
        (number,) = numbers.batch_create_numbers(requests=[item(e164)]).numbers
        assert number.ref != old.ref
    assert stored(db, [e164]) == 1


def test_batch_sizes_of_one_to_a_thousand(tenant, fresh_e164, db):
    with tenant.numbers() as numbers:
        for requests in ([], [item(fresh_e164()) for _ in range(1001)]):
            with pytest.raises(InvalidArgumentError) as caught:
                numbers.batch_create_numbers(requests=requests)
            assert violated_fields(caught.value) == {"requests"}
        e164s = [fresh_e164() for _ in range(1000)]
        assert len(numbers.batch_create_numbers(requests=[item(e) for e in e164s]).numbers) == 1000
    assert stored(db, e164s) == 1000


# --- BatchDeleteNumbers ---------------------------------------------------------------------------


def test_batch_delete_deletes_every_number(tenant, fresh_e164, db):
    e164s = [fresh_e164() for _ in range(3)]
    with tenant.numbers() as numbers:
        refs = [n.ref for n in numbers.batch_create_numbers(requests=[item(e) for e in e164s]).numbers]
        assert numbers.batch_delete_numbers(refs=refs) == pb.BatchDeleteNumbersResponse()
        for ref in refs:
            with pytest.raises(NotFoundError):
                numbers.get_number(ref)
        assert len(numbers.batch_create_numbers(requests=[item(e) for e in e164s]).numbers) == 3  # free again
    assert stored(db, e164s) == 3


def test_batch_delete_of_a_foreign_ref_is_not_found_and_deletes_nothing(tenant, other_tenant, fresh_e164):
    with tenant.numbers() as mine, other_tenant.numbers(Role.ADMIN) as theirs:
        own = [n.ref for n in mine.batch_create_numbers(requests=[item(fresh_e164()) for _ in range(3)]).numbers]
        foreign = theirs.create_number(item(fresh_e164()))
        with pytest.raises(NotFoundError) as caught:
            mine.batch_delete_numbers(refs=[own[0], own[1], foreign.ref, own[2]])
        assert caught.value.message.startswith("refs[2]: ")
        assert other_tenant.ref not in caught.value.message
        for ref in own:
            assert mine.get_number(ref).ref == ref  # rolled back
        assert theirs.get_number(foreign.ref) == foreign
        with pytest.raises(NotFoundError) as caught:
            mine.batch_delete_numbers(refs=[own[0], "no-such-ref"])
        assert "refs[1]" in caught.value.message and "'no-such-ref'" in caught.value.message
        assert mine.get_number(own[0]).ref == own[0]


def test_batch_delete_rejects_bad_lists(tenant):
    cases = [([], "refs"), (["x"] * 1001, "refs"), (["a", ""], "refs[1]"), (["a", "b", "a"], "refs[2]")]
    with tenant.numbers() as numbers:
        for refs, field in cases:
            with pytest.raises(InvalidArgumentError) as caught:
                numbers.batch_delete_numbers(refs=refs)
            assert violated_fields(caught.value) == {field}


def test_a_reader_key_cannot_batch(tenant, fresh_e164):
    with tenant.numbers(Role.READER) as numbers:
        with pytest.raises(PermissionDeniedError):
            numbers.batch_create_numbers(requests=[item(fresh_e164())])
        with pytest.raises(PermissionDeniedError):
            numbers.batch_delete_numbers(refs=["any"])


# --- the CSV import ----------------------------------------------------------------------------


ROUTINGS = [
    {"aor_link": "sip:{n}@pbx.example.com"},
    {"webhook": "https://hooks.example.com/voice"},
    {"webhook": "https://hooks.example.com/ivr-main"},
    {"webhook": "https://hooks.example.com/ivr-2"},
    {"forward_sip_to": "sip:+{n}@carrier.example.net"},
]
HEADER = ["e164_number", "provider_ref", "name", "aor_link", "webhook", "forward_sip_to"]


def write_csv(path, e164s, header=HEADER):  # type: ignore[no-untyped-def]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, e164 in enumerate(e164s):
            routing = {k: v.format(n=e164[1:]) for k, v in ROUTINGS[i % len(ROUTINGS)].items()}
            row = {"e164_number": e164, "provider_ref": "trunk-csv", "name": f"Line {i}", **routing}
            writer.writerow([row.get(column, "") for column in header])
    return path


def test_import_csv_of_only_the_required_columns_makes_numbers_without_routing(tenant, fresh_e164, tmp_path):
    e164s = [fresh_e164() for _ in range(3)]
    path = tmp_path / "numbers.csv"
    path.write_text("e164_number,provider_ref\n" + "".join(f"{e164},trunk-bare\n" for e164 in e164s))
    with tenant.numbers() as numbers:
        assert numbers.import_numbers_csv(path, progress=False).rows == 3
        made = list(numbers.iter_numbers(filter={"provider_ref": "trunk-bare"}))
        assert [n.e164_number for n in made] == e164s
        assert {n.WhichOneof("routing") for n in made} == {None}


def test_import_csv_in_batches_then_again_without_duplicates(tenant, fresh_e164, db, tmp_path, capsys):
    e164s = [fresh_e164() for _ in range(2345)]
    path = write_csv(tmp_path / "numbers.csv", e164s)
    with tenant.numbers() as numbers:
        summary = numbers.import_numbers_csv(path, batch_size=500, progress=False)
        assert isinstance(summary, ImportSummary)
        assert (summary.rows, summary.batches) == (2345, 5)
        assert stored(db, e164s) == 2345
        by_e164 = {n.e164_number: n for n in numbers.iter_numbers(page_size=1000, filter={"provider_ref": "trunk-csv"})}
        assert len(by_e164) == 2345
        assert by_e164[e164s[0]].aor_link == f"sip:{e164s[0][1:]}@pbx.example.com"
        assert by_e164[e164s[0]].name == "Line 0"
        assert by_e164[e164s[1]].ingress_info == pb.IngressInfo(webhook="https://hooks.example.com/voice")
        assert by_e164[e164s[2]].ingress_info == pb.IngressInfo(webhook="https://hooks.example.com/ivr-main")
        assert by_e164[e164s[3]].ingress_info.webhook == "https://hooks.example.com/ivr-2"
        assert by_e164[e164s[4]].forward_sip_to == f"sip:+{e164s[4][1:]}@carrier.example.net"

        again = numbers.import_numbers_csv(str(path), batch_size=1000, progress=False)
        assert (again.rows, again.batches) == (2345, 3)
        assert stored(db, e164s) == 2345
        assert {n.ref for n in numbers.iter_numbers(page_size=1000, filter={"provider_ref": "trunk-csv"})} == {
            n.ref for n in by_e164.values()
        }
    assert capsys.readouterr().err == ""  # progress=False draws nothing


def test_import_csv_names_the_line_of_a_bad_row_and_a_fixed_file_finishes(tenant, fresh_e164, db, tmp_path):
    e164s = [fresh_e164() for _ in range(1200)]
    good = e164s[801]
    e164s[801] = "+1555"  # line 803: the header is line 1
    path = write_csv(tmp_path / "numbers.csv", e164s)
    with tenant.numbers() as numbers:
        with pytest.raises(InvalidArgumentError) as caught:
            numbers.import_numbers_csv(path, batch_size=500, progress=False)
        assert violated_fields(caught.value) == {"line 803, e164_number"}
        assert "line 803, e164_number: '+1555' is not a valid phone number" in caught.value.message
        assert "Lines 502-1001" in caught.value.message and "the 500 rows before line 502 were" in caught.value.message
        assert caught.value.__cause__.field_violations[0].field == "requests[301].e164_number"
        assert stored(db, e164s) == 500  # the first batch only
        first = {n.ref for n in numbers.iter_numbers(page_size=1000, filter={"provider_ref": "trunk-csv"})}

        e164s[801] = good
        write_csv(path, e164s)
        assert numbers.import_numbers_csv(path, batch_size=500, progress=False).rows == 1200
        assert stored(db, e164s) == 1200
        assert first <= {n.ref for n in numbers.iter_numbers(page_size=1000, filter={"provider_ref": "trunk-csv"})}


def test_import_csv_names_the_line_of_a_taken_number(tenant, other_tenant, fresh_e164, tmp_path):
    e164s = [fresh_e164() for _ in range(30)]
    with other_tenant.numbers() as theirs:
        theirs.create_number(item(e164s[12]))
    path = write_csv(tmp_path / "numbers.csv", e164s)
    with tenant.numbers() as numbers, pytest.raises(AlreadyExistsError) as caught:
        numbers.import_numbers_csv(path, batch_size=10, progress=False)
    assert f"line 14: The number {e164s[12]} is already provisioned" in caught.value.message
    assert "Lines 12-21 were one batch: nothing of them was imported; the 10 rows before line 12 were" in (
        caught.value.message
    )


def test_import_csv_names_rows_it_cannot_send(tenant, fresh_e164, db, tmp_path):
    path = tmp_path / "numbers.csv"
    e164s = [fresh_e164() for _ in range(3)]
    path.write_text(
        "E164_Number , provider_ref,aor_link,webhook\n"
        f"{e164s[0]},t,sip:1@pbx.example.com,\n"
        "\n"
        f"{e164s[1]},t,sip:2@pbx.example.com,https://both.example.com/\n"
        f"{e164s[2]},t\n"
    )
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.import_numbers_csv(path, progress=False)
    assert violated_fields(caught.value) == {"line 4", "line 5"}
    assert "line 4: set one of aor_link" in caught.value.message and "line 5: has 2 fields" in caught.value.message
    assert stored(db, e164s) == 0  # the batch holding them was not sent


def test_import_csv_needs_a_header_it_knows(tenant, tmp_path):
    path = tmp_path / "numbers.csv"
    with tenant.numbers() as numbers:
        for header, named in (("e164_number,name\n", "provider_ref"), ("e164_number,provider_ref,aor\n", "aor")):
            path.write_text(header)
            with pytest.raises(ValueError, match=named):
                numbers.import_numbers_csv(path, progress=False)
        path.write_text("e164_number,provider_ref\n")
        empty = numbers.import_numbers_csv(path, progress=False)
        assert (empty.rows, empty.batches) == (0, 0)
        with pytest.raises(ValueError, match="batch_size"):
            numbers.import_numbers_csv(path, batch_size=1001)


def test_import_csv_draws_a_progress_bar_when_asked(tenant, fresh_e164, tmp_path, capsys):
    path = write_csv(tmp_path / "numbers.csv", [fresh_e164() for _ in range(40)])
    with tenant.numbers() as numbers:
        numbers.import_numbers_csv(path, batch_size=10, progress=True)
    drawn = capsys.readouterr().err
    # tqdm's line: the file's name, bytes read, then the rows in the postfix; left on the screen at the end.
    assert "numbers.csv: 100%" in drawn and "40 rows, " in drawn and " rows/s]" in drawn and drawn.endswith("\n")


def test_async_import_csv(tenant, fresh_e164, db, tmp_path):
    e164s = [fresh_e164() for _ in range(120)]
    path = write_csv(tmp_path / "numbers.csv", e164s)

    async def run() -> ImportSummary:
        async with tenant.async_numbers() as numbers:
            return await numbers.import_numbers_csv(path, batch_size=50, progress=False)

    summary = asyncio.run(run())
    assert (summary.rows, summary.batches) == (120, 3)
    assert stored(db, e164s) == 120

    bad = write_csv(tmp_path / "bad.csv", [fresh_e164(), "+1 555", fresh_e164()])

    async def fail() -> None:
        async with tenant.async_numbers() as numbers:
            await numbers.import_numbers_csv(bad, progress=False)

    with pytest.raises(InvalidArgumentError) as caught:
        asyncio.run(fail())
    assert violated_fields(caught.value) == {"line 3, e164_number"}


def test_import_csv_of_a_batch_with_a_hundred_bad_rows_names_their_lines(tenant, fresh_e164, tmp_path):
    """A status names at most 50 fields (gRPC's trailer limit refused one naming each of 60 with
    RESOURCE_EXHAUSTED): the importer still names the lines of those it got, and says more are bad."""
    e164s = [fresh_e164() for _ in range(200)]
    for i in range(50, 150):
        e164s[i] = "+1555" + "5" * 60  # lines 52-151
    path = write_csv(tmp_path / "numbers.csv", e164s)
    with tenant.numbers() as numbers, pytest.raises(InvalidArgumentError) as caught:
        numbers.import_numbers_csv(path, batch_size=200, progress=False)
    fields = [v.field for v in caught.value.field_violations]
    assert fields[0] == "line 52, e164_number" and fields[-1] == "…"
    assert "more violations not shown" in caught.value.field_violations[-1].description
    assert "line 52, e164_number: " in caught.value.message and len(fields) > 10
