"""Is a regular expression one RE2 accepts? (Envoy's ``safe_regex`` and Istio use RE2.)

Python's ``re`` is not RE2: it accepts lookarounds, backreferences, atomic groups and
possessive quantifiers, which RE2 rejects, and it rejects RE2 syntax such as ``\\pL``,
``\\x{263a}``, ``[[:alpha:]]``, ``\\Q...\\E``, ``\\z`` and flags in the middle of a pattern.
:func:`re2_error` scans a pattern with RE2's grammar, names each construct RE2 lacks, rewrites
the RE2-only syntax into something equivalent for Python, and lets Python's parser check what
is left (balanced groups, valid repetitions and ranges). It never runs the pattern.

Then RE2 itself (the ``google-re2`` package, the library Envoy links) compiles what passed:
it has the last word on syntax (Unicode class names such as ``\\p{Greek}``, which the scanner
checks only for shape), and it measures the compiled program. Envoy refuses a regex whose RE2
program is larger than its runtime's ``re2.max_program_size.error_level`` (100 by default; the
bootstrap does not change it): such a pattern would be NACKed by every proxy, so it is an
input error here. The pattern is measured as written and case-folded (``(?i)``, as the
translator sends ``ignoreUriCase`` matches), and the larger size counts.
"""

from __future__ import annotations

import re
import warnings

import re2 as google_re2

#: Istio's bound: a longer pattern may exceed Envoy's RE2 program-size limit.
MAX_LENGTH = 1024
#: RE2 rejects ``x{n}`` for n above 1000.
MAX_REPEAT = 1000
#: Envoy's default ``re2.max_program_size.error_level``: a larger program is refused (NACK).
MAX_PROGRAM_SIZE = 100

_POSIX_CLASSES = frozenset(
    [
        "alnum",
        "alpha",
        "ascii",
        "blank",
        "cntrl",
        "digit",
        "graph",
        "lower",
        "print",
        "punct",
        "space",
        "upper",
        "word",
        "xdigit",
    ]
)
_REPEAT = re.compile(r"\{(\d+)(,(\d*))?\}")
_FLAG_GROUP = re.compile(r"\(\?([A-Za-z-]*)([:)])")
_NAME = re.compile(r"[A-Za-z0-9_]+")
_UNICODE_NAME = re.compile(r"\^?[A-Za-z_]+")
_SIMPLE_ESCAPES = frozenset("dDsSwWbBAafnrtv")


class _NotRE2(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def re2_error(pattern: str) -> str | None:
    """``None`` when RE2 accepts ``pattern``; otherwise why not, in words a user can act on."""
    if len(pattern) > MAX_LENGTH:
        return f"the regex is too long ({len(pattern)} characters; at most {MAX_LENGTH})"
    try:
        translated = _Scanner(pattern).translate()
    except _NotRE2 as e:
        return f"{e.message} (Interlock uses RE2 syntax, as Envoy does)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            re.compile(translated)
    except re.error as e:
        return f"not a valid regular expression: {e.msg}"
    except (RecursionError, OverflowError):
        return "the regex is nested too deeply"
    return _program_error(pattern)


def program_size(pattern: str) -> int:
    """The size of the RE2 program Envoy compiles for ``pattern`` (as written or
    case-folded, whichever is larger); raises ``re2.error`` when RE2 refuses it."""
    options = google_re2.Options()
    options.log_errors = False  # RE2::Quiet, as Envoy compiles
    # Measured against Envoy 1.40: the size it reports is that of the program RE2 compiles
    # from the pattern's UTF-8 bytes read as Latin-1 (`.{200}` is 404, `é{200}` 205, `a{200}`
    # 204; read as UTF-8, `.{200}` would be 1604).
    options.encoding = google_re2.Options.Encoding.LATIN1
    sizes: list[int] = [
        google_re2.compile(p.encode(), options).programsize for p in (pattern, f"(?i){pattern}")
    ]
    return max(sizes)


_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def literal(text: str) -> str:
    """``text`` as a literal in an RE2 expression."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def built_regex_error(expression: str, what: str) -> str | None:
    """For a regex Interlock builds from a user's ``what`` (an authorization policy's host,
    a namespace): why Envoy would refuse it, or None."""
    size = program_size(expression)
    if size > MAX_PROGRAM_SIZE:
        return (
            f"{what} is too long for Envoy: it is matched with a regex whose RE2 program size "
            f"is {size}, over Envoy's limit of {MAX_PROGRAM_SIZE}"
        )
    return None


def _program_error(pattern: str) -> str | None:
    try:
        size = program_size(pattern)
    except google_re2.error as e:
        reason = e.args[0] if e.args else "refused"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return f"not a valid RE2 regular expression: {reason}"
    if size > MAX_PROGRAM_SIZE:
        return (
            f"the regex is too complex for Envoy: its RE2 program size is {size}, over Envoy's "
            f"limit of {MAX_PROGRAM_SIZE} (re2.max_program_size.error_level); simplify it "
            "(fewer alternatives or repetitions), or match a prefix or an exact value instead"
        )
    return None


class _Scanner:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []

    def translate(self) -> str:
        p = self.p
        while self.i < len(p):
            c = p[self.i]
            if c == "\\":
                self.out.append(self._escape(in_class=False))
            elif c == "[":
                self._char_class()
            elif c == "(":
                self._group()
            elif c in "*+?":
                self.out.append(c)
                self.i += 1
                self._after_repeat()
            elif c == "{":
                self._braces()
            else:
                self.out.append(c)
                self.i += 1
        return "".join(self.out)

    def _after_repeat(self) -> None:
        """After a quantifier: a lazy ``?`` is fine, a possessive ``+`` is not RE2."""
        p = self.p
        if self.i < len(p) and p[self.i] == "?":
            self.out.append("?")
            self.i += 1
        elif self.i < len(p) and p[self.i] == "+":
            raise _NotRE2("possessive quantifiers (x*+, x++, x?+, x{n}+) are not supported")

    def _braces(self) -> None:
        m = _REPEAT.match(self.p, self.i)
        if m is None:
            # RE2 (like Python) reads a brace that does not form a repetition as a literal.
            self.out.append("\\{")
            self.i += 1
            return
        low = int(m.group(1))
        high = int(m.group(3)) if m.group(3) else None
        if low > MAX_REPEAT or (high is not None and high > MAX_REPEAT):
            raise _NotRE2(f"a repetition count above {MAX_REPEAT} ({m.group()}) is not supported")
        if high is not None and high < low:
            raise _NotRE2(f"the repetition {m.group()} has its bounds reversed")
        self.out.append(m.group())
        self.i = m.end()
        self._after_repeat()

    def _group(self) -> None:
        p, i = self.p, self.i
        if not p.startswith("(?", i):
            self.out.append("(")
            self.i += 1
            return
        rest = p[i + 2 : i + 4]
        if rest.startswith(":"):
            self.out.append("(?:")
            self.i += 3
            return
        if rest.startswith(("=", "!")):
            raise _NotRE2("lookahead assertions ((?=...), (?!...)) are not supported")
        if rest in ("<=", "<!"):
            raise _NotRE2("lookbehind assertions ((?<=...), (?<!...)) are not supported")
        if rest.startswith("P=") or rest.startswith("P>"):
            raise _NotRE2("named backreferences and recursion ((?P=name)) are not supported")
        if rest.startswith("P<") or rest.startswith("<"):
            start = i + (4 if rest.startswith("P<") else 3)
            end = p.find(">", start)
            name = p[start:end] if end != -1 else ""
            if not _NAME.fullmatch(name):
                raise _NotRE2(f"invalid group name {name!r}: use letters, digits and '_'")
            self.out.append(f"(?P<{name}>")
            self.i = end + 1
            return
        if rest.startswith(">"):
            raise _NotRE2("atomic groups ((?>...)) are not supported")
        if rest.startswith("#"):
            raise _NotRE2("comments ((?#...)) are not supported")
        if rest.startswith("("):
            raise _NotRE2("conditional groups ((?(1)...)) are not supported")
        m = _FLAG_GROUP.match(p, i)
        if m is None:
            raise _NotRE2(f"the group syntax {p[i : i + 4]!r} is not supported")
        flags, closer = m.group(1), m.group(2)
        on, _, off = flags.partition("-")
        for flag in on + off:
            if flag not in "imsU":
                raise _NotRE2(f"the flag {flag!r} is not supported (RE2 knows i, m, s and U)")
        if not flags or flags.endswith("-") or "-" in off:
            raise _NotRE2(f"the flag group {m.group()!r} is malformed")
        # Python allows global flags only at the very start; RE2 anywhere. The flags change how
        # the pattern matches, not whether it is well-formed, so the check drops them.
        self.out.append("(?:" if closer == ":" else "")
        self.i = m.end()

    def _char_class(self) -> None:
        p = self.p
        self.out.append("[")
        self.i += 1
        if self.i < len(p) and p[self.i] == "^":
            self.out.append("^")
            self.i += 1
        first = True
        while self.i < len(p):
            c = p[self.i]
            if c == "]" and not first:
                self.out.append("]")
                self.i += 1
                return
            first = False
            if c == "\\":
                self.out.append(self._escape(in_class=True))
            elif c == "[" and p.startswith("[:", self.i):
                end = p.find(":]", self.i + 2)
                if end == -1:
                    self.out.append("\\[")
                    self.i += 1
                    continue
                name = p[self.i + 2 : end].removeprefix("^")
                if name not in _POSIX_CLASSES:
                    raise _NotRE2(f"unknown character class [:{name}:]")
                self.out.append("a")
                self.i = end + 2
            elif c in "[]":
                self.out.append("\\" + c)
                self.i += 1
            else:
                self.out.append(c)
                self.i += 1
        # Unterminated: leave it to Python's parser to say so.

    def _escape(self, *, in_class: bool) -> str:
        p, i = self.p, self.i
        if i + 1 >= len(p):
            raise _NotRE2("the pattern ends with a lone backslash")
        c = p[i + 1]
        self.i = i + 2
        if c in _SIMPLE_ESCAPES:
            return "\\" + c
        if c == "z":
            return "" if in_class else r"\Z"
        if c == "Z":
            raise _NotRE2(r"\Z is not supported; use \z for the end of the text")
        if c == "C":
            return "a" if in_class else "."
        if c in "pP":
            return self._unicode_class(in_class)
        if c == "x":
            return self._hex()
        if c == "Q":
            end = p.find("\\E", self.i)
            literal = p[self.i :] if end == -1 else p[self.i : end]
            self.i = len(p) if end == -1 else end + 2
            return "".join(re.escape(ch) for ch in literal)
        if c == "E":
            return ""  # a stray \E is ignored by RE2
        if c.isdigit():
            return self._octal(c)
        if c.isascii() and c.isalnum():
            raise _NotRE2(f"the escape \\{c} is not supported")
        return "\\" + c

    def _unicode_class(self, in_class: bool) -> str:
        p = self.p
        if self.i < len(p) and p[self.i] == "{":
            end = p.find("}", self.i)
            name = p[self.i + 1 : end] if end != -1 else ""
            if not _UNICODE_NAME.fullmatch(name):
                raise _NotRE2(f"invalid Unicode class \\p{{{name}}}")
            self.i = end + 1
        elif self.i < len(p) and p[self.i].isalpha():
            self.i += 1
        else:
            raise _NotRE2("\\p must be followed by a class name (\\pL or \\p{Greek})")
        return "a" if in_class else "[a]"

    def _hex(self) -> str:
        p = self.p
        if self.i < len(p) and p[self.i] == "{":
            end = p.find("}", self.i)
            digits = p[self.i + 1 : end] if end != -1 else ""
            if not digits or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
                raise _NotRE2(f"invalid hexadecimal escape \\x{{{digits}}}")
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise _NotRE2(f"\\x{{{digits}}} is beyond the last Unicode code point")
            self.i = end + 1
            return f"\\U{code:08x}"
        digits = p[self.i : self.i + 2]
        if len(digits) != 2 or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
            raise _NotRE2("\\x must be followed by two hexadecimal digits or {...}")
        self.i += 2
        return "\\x" + digits

    def _octal(self, first: str) -> str:
        p = self.p
        if first in "89":
            raise _NotRE2(f"backreferences (\\{first}) are not supported")
        digits = first
        while len(digits) < 3 and self.i < len(p) and p[self.i] in "01234567":
            digits += p[self.i]
            self.i += 1
        if first != "0" and len(digits) == 1:
            raise _NotRE2(f"backreferences (\\{first}) are not supported")
        return f"\\U{int(digits, 8):08x}"
