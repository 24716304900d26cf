"""The NG client against a real rtpengine (userspace, loopback), and its errors when there is none."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sip_peers import Rtpengine, free_udp_port, require
from voxplane.services.calls.rtpengine import NgClient, NgError, decode, encode

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
)


@pytest.fixture(scope="module")
def rtpengine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rtpengine]:
    require("rtpengine")
    running = Rtpengine(tmp_path_factory.mktemp("rtpengine"))
    yield running
    running.stop()


def test_bencode_round_trips_what_ng_uses():
    value = {"command": "offer", "flags": ["a", "b"], "n": 3, "sdp": "v=0\r\n", "nested": {"x": [1, "y"]}}
    assert encode(value) == b"d7:command5:offer5:flagsl1:a1:be1:n" + b"i3e6:nestedd1:xli1e1:yee3:sdp5:v=0\r\ne"
    assert decode(encode(value)) == value
    with pytest.raises(ValueError):
        decode(b"4:abc")


def test_ping_offer_query_delete(rtpengine: Rtpengine):
    async def run() -> None:
        ng = await NgClient.connect("127.0.0.1", rtpengine.ng_port)
        try:
            assert (await ng.command("ping"))["result"] == "pong"
            offered = await ng.command("offer", call_id="ng-test", from_tag="a", sdp=SDP)
            assert "m=audio " in offered["sdp"] and "m=audio 40000" not in offered["sdp"]  # rtpengine's own port
            assert "a" in (await ng.command("query", call_id="ng-test"))["tags"]
            await ng.command("delete", call_id="ng-test")
            with pytest.raises(NgError, match="rtpengine refused 'query'"):
                await ng.command("query", call_id="ng-test")
        finally:
            ng.close()

    asyncio.run(run())


def test_concurrent_commands_get_their_own_replies(rtpengine: Rtpengine):
    async def run() -> None:
        ng = await NgClient.connect("127.0.0.1", rtpengine.ng_port)
        try:
            calls = [f"ng-many-{n}" for n in range(20)]
            offers = await asyncio.gather(*(ng.command("offer", call_id=c, from_tag="a", sdp=SDP) for c in calls))
            queries = await asyncio.gather(*(ng.command("query", call_id=c) for c in calls))
            assert len({o["sdp"] for o in offers}) == 20 and all("a" in q["tags"] for q in queries)
            await asyncio.gather(*(ng.command("delete", call_id=c) for c in calls))
        finally:
            ng.close()

    asyncio.run(run())


def test_nobody_listening_is_a_clear_error():
    async def run() -> None:
        ng = await NgClient.connect("127.0.0.1", free_udp_port(), timeout=0.5)
        try:
            with pytest.raises(NgError, match="rtpengine at 127.0.0.1:\\d+ (is not reachable|did not answer)"):
                await ng.command("ping")
        finally:
            ng.close()

    asyncio.run(run())


def test_a_silent_peer_times_out(tmp_path: Path):
    import socket

    async def run(port: int) -> None:
        ng = await NgClient.connect("127.0.0.1", port, timeout=0.2)
        try:
            with pytest.raises(NgError, match="did not answer 'ping' within 0.2s"):
                await ng.command("ping")
        finally:
            ng.close()

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # receives, never answers
        silent.bind(("127.0.0.1", 0))
        asyncio.run(run(silent.getsockname()[1]))
