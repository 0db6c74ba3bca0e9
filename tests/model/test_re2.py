"""RE2 syntax: what Envoy accepts is accepted, what RE2 lacks is refused with a reason, and so
is a regex whose RE2 program is over Envoy's limit (each case checked against Envoy 1.40's
`--mode validate` when it was written)."""

from __future__ import annotations

import pytest

from interlock.model.schema import re2_error

ACCEPTED = [
    r"^/api/v[0-9]+/.*$",
    r"(?i)^bearer .+",
    r"a(?i:b)c",
    r"(?P<version>v\d+)",
    r"(?<version>v\d+)",
    r"\pL+",
    r"\p{Greek}\P{Lu}",
    r"[[:alpha:]][[:^digit:]]",
    r"\x{e9}",
    r"\Qa.b*c\E+",
    r"end\z",
    r"\C",
    r"x{2,48}",
    r"a{96}",
    r".{48}",
    r"a{,3}",
    r"[]a]",
    r"\123",
    r"\0",
    r"(?U)a+",
    r"a*?b+?c??",
    r"",
]

REFUSED = {
    r"a(?=b)": "lookahead",
    r"a(?!b)": "lookahead",
    r"(?<=a)b": "lookbehind",
    r"(?<!a)b": "lookbehind",
    r"(a)\1": "backreference",
    r"(?P<x>a)(?P=x)": "backreference",
    r"(?>a+)": "atomic",
    r"a*+": "possessive",
    r"a++": "possessive",
    r"a{2}+": "possessive",
    r"(?#comment)": "comments",
    r"(a)?(?(1)b|c)": "conditional",
    r"a\Z": r"\z",
    r"(?x) a": "flag 'x'",
    r"x{1001}": "above 1000",
    # Envoy 1.40 refuses these (its RE2 reads the pattern's bytes as Latin-1, and its
    # re2.max_program_size.error_level is 100): the API says so first.
    r"\x{263a}": "invalid escape sequence",
    r"x{2,1000}": "program size is 2002",
    r"a{97}": "program size is 101",
    r".{50}": "program size is 104",
    r"x{3,2}": "reversed",
    r"\G": "not supported",
    r"(unclosed": "missing",
    r"[z-a]": "bad character range",
    r"*a": "nothing to repeat",
    "a" * 1025: "too long",
}


@pytest.mark.parametrize("pattern", ACCEPTED)
def test_re2_syntax_is_accepted(pattern: str) -> None:
    assert re2_error(pattern) is None


@pytest.mark.parametrize(("pattern", "reason"), REFUSED.items(), ids=[*list(REFUSED)[:-1], "long"])
def test_constructs_re2_lacks_are_refused_with_the_reason(pattern: str, reason: str) -> None:
    message = re2_error(pattern)
    assert message is not None
    assert reason.lower() in message.lower(), message
