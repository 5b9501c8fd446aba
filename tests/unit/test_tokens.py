"""What counts as visible ASCII: the only characters a token or an API key may be made of."""

from __future__ import annotations

import pytest

from killb_broker.tokens import is_visible_ascii


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
        "!~",  # both ends of the visible range
        "key-With_0123456789+/=",
        "".join(chr(c) for c in range(0x21, 0x7F)),
    ],
)
def test_visible_ascii_strings_pass(value: str) -> None:
    # Given a non-empty string of characters 0x21-0x7E, When checked, Then it passes
    assert is_visible_ascii(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "tok en",
        " token",
        "token ",
        "token\r\nX-Injected: 1",
        "token\n",
        "\ttoken",
        "tok\x00en",
        "tok\x7fen",  # DEL
        "tok\x1fen",
        "tokén",
        "tok\u00a0en",  # no-break space
        "tok\u2028en",  # line separator
    ],
)
def test_strings_with_a_character_outside_the_visible_range_fail(value: str) -> None:
    # Given a string that is empty or holds a space, a control or a non-ASCII character,
    # When checked, Then it fails
    assert not is_visible_ascii(value)


@pytest.mark.parametrize("value", [None, 42, 1.5, True, b"token", ["token"], {"t": "x"}])
def test_values_that_are_not_strings_fail(value: object) -> None:
    # Given something that is not a str (bytes included), When checked, Then it fails
    assert not is_visible_ascii(value)


def test_a_passing_value_is_narrowed_to_str() -> None:
    # Given a value of unknown type, When the check passes, Then the type checker knows it is a str
    value: object = "token"
    assert is_visible_ascii(value)
    assert value.upper() == "TOKEN"
