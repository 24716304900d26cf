"""Page tokens at unit level: opaque, bound to their scope, and refused when altered."""

from __future__ import annotations

import base64

import pytest

from voxplane.services.core.errors import InvalidArgument
from voxplane.services.core.paging import PageTokens

TOKENS = PageTokens(b"a deployment's secret")
SCOPE = "search/+4412"


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def test_a_token_continues_after_its_position_and_reveals_nothing_of_it():
    token = TOKENS.issue(SCOPE, "+441224901769")
    assert TOKENS.read(SCOPE, token) == "+441224901769"
    assert b"441224901769" not in raw(token) and "441224901769" not in token
    assert TOKENS.issue(SCOPE, 12345) != TOKENS.issue(SCOPE, 12345)  # a fresh nonce each time
    assert b"12345" not in raw(TOKENS.issue(SCOPE, 12345))


@pytest.mark.parametrize(
    "spoil",
    [
        lambda token: token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1],  # a bit of the tag
        lambda token: token[:10],  # cut short
        lambda token: "not base64 at all!",
        lambda token: base64.urlsafe_b64encode(b"12345").decode(),  # a position written by hand
    ],
)
def test_an_altered_token_is_invalid_argument_on_page_token(spoil):
    with pytest.raises(InvalidArgument) as caught:
        TOKENS.read(SCOPE, spoil(TOKENS.issue(SCOPE, 42)))
    assert [v.field for v in caught.value.violations] == ["page_token"]


def test_a_token_works_only_for_its_scope_and_deployment():
    token = TOKENS.issue(SCOPE, 42)
    with pytest.raises(InvalidArgument):
        TOKENS.read("search/+4413", token)
    with pytest.raises(InvalidArgument):
        PageTokens(b"another deployment").read(SCOPE, token)
    assert TOKENS.read(SCOPE, "") is None
