"""PII and secret detection / scrubbing for pre-training text.

This module owns *what counts as PII* in tokenmill and how it is replaced:
emails, phone numbers, IPv4/IPv6 addresses, payment card numbers (Luhn),
US social security numbers, IBANs (mod-97) and credentials (cloud / SaaS API
tokens, PEM private keys, JWTs, ``password = "..."`` style assignments and
passwords embedded in URLs).

Everything is plain functions over ``str`` using only the standard library:
no Beam, no third-party dependencies.  It runs on every document of the
corpus, so the layout is driven by cost:

* a full regex scan of a 3 KB document costs ~15-20 us in CPython even when
  nothing matches, while ``str.find`` / ``in`` on a single character costs
  ~0.1 us.  Detectors therefore anchor on rare characters (``@``, ``=``,
  ``:``, ``::``) found with ``str.find``, or use regexes that begin with a
  literal (``AKIA``, ``eyJ``, ``-----BEGIN``) which ``re`` can skip to fast;
* all numeric types (cards, SSNs, IBANs, IPv4, phones) share one pass that
  cuts the text into digit "chunks"; the specific patterns only run on the
  few chunks long enough to hold PII;
* checksums, ``ipaddress`` and JWT header decoding only run on survivors.

Precision is preferred over recall for the ambiguous types (phone numbers,
dotted quads): a scrubber that eats version numbers, dates, ISBNs or
population figures damages the training data on every document, while a
missed local-format phone number is a small, bounded leak.  Only ASCII
digits are considered.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "PII_TYPES",
    "PLACEHOLDERS",
    "PiiConfig",
    "PiiSpan",
    "find_pii",
    "iban_valid",
    "luhn_valid",
    "scrub_pii",
]

PII_TYPES: tuple[str, ...] = ("email", "phone", "ip", "credit_card", "ssn", "iban", "secret")

PLACEHOLDERS: dict[str, str] = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "ip": "<IP_ADDRESS>",
    "credit_card": "<CREDIT_CARD>",
    "ssn": "<US_SSN>",
    "iban": "<IBAN>",
    "secret": "<SECRET>",
}

# Overlap resolution: a span of a higher-priority type always beats a
# lower-priority one.  Checksummed numbers outrank email/ip/phone because a
# passing Luhn/mod-97 check is much stronger evidence than a phone-ish shape.
_PRIORITY: dict[str, int] = {
    "secret": 5,
    "credit_card": 4,
    "iban": 4,
    "ssn": 4,
    "email": 3,
    "ip": 2,
    "phone": 1,
}


@dataclass(frozen=True)
class PiiConfig:
    """Which PII types :func:`scrub_pii` replaces."""

    types: tuple[str, ...] = PII_TYPES

    def __post_init__(self) -> None:
        # Accept any iterable (lists from TOML/JSON configs) but store a tuple
        # so the config stays hashable and immutable.
        object.__setattr__(self, "types", _check_types(self.types))


@dataclass(frozen=True)
class PiiSpan:
    """A detected span ``text[start:end]``; ``subtype`` names the detector that fired."""

    type: str
    start: int
    end: int
    subtype: str = ""


def _check_types(types: Iterable[str]) -> tuple[str, ...]:
    if isinstance(types, str):
        types = (types,)  # a bare "email" would otherwise be iterated per letter
    types = tuple(types)
    unknown = [t for t in types if t not in _PRIORITY]
    if unknown:
        raise ValueError(f"unknown PII type(s) {unknown!r}; expected a subset of {PII_TYPES}")
    return types


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check; spaces and dashes are ignored, anything else fails."""
    digits = digits.replace(" ", "").replace("-", "")
    if len(digits) < 2 or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Official IBAN lengths (SWIFT IBAN registry).  Knowing the exact length lets
# us cut a candidate out of running text ("... 8901 X in a sentence") instead
# of relying on word boundaries, and rejects most look-alikes before the
# checksum is computed.
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip


def iban_valid(candidate: str) -> bool:
    """ISO 13616 check: known country, exact length, alphanumeric, mod 97 == 1.

    Spaces and dashes between groups are allowed; letter case must be
    consistent (``gb82west...`` passes, ``GB82wEST...`` does not).
    """
    s = candidate.replace(" ", "").replace("-", "")
    if not s.isascii() or not s.isalnum():
        return False
    if s != s.upper() and s != s.lower():
        return False
    s = s.upper()
    if _IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    # One big int() is far faster than a digit-by-digit mod loop in Python.
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


# ---------------------------------------------------------------------------
# Email
# ---------------------------------------------------------------------------

_EMAIL_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_%+-.")
# Matched *from* the start of the local part, which is found by walking left
# from each "@".  The local part is ASCII so that a CJK/Cyrillic word glued to
# an address is not swallowed; the domain is Unicode-aware so IDN addresses
# (user@会社.jp) and punycode TLDs (xn--p1ai) are found.
_EMAIL_RE = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*"
    r"@(?:(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[A-Za-z0-9-]{2,59})"
    r"|\d{1,3}(?:\.\d{1,3}){3}|\[\d{1,3}(?:\.\d{1,3}){3}\])"
    r"(?![\w-])"
)
_URL_USERINFO_RE = re.compile(r"://[^\s/@]*:$")


def _find_emails(text: str, out: list[PiiSpan]) -> None:
    at = text.find("@")
    while at >= 0:
        start = at
        limit = max(0, at - 64)  # RFC 5321 caps the local part at 64 octets
        while start > limit and text[start - 1] in _EMAIL_LOCAL_CHARS:
            start -= 1
        while start < at and text[start] == ".":
            start += 1
        m = None
        if start < at and (start == 0 or text[start - 1] not in _EMAIL_LOCAL_CHARS):
            m = _EMAIL_RE.match(text, start)
        if m is not None and _email_context_ok(text, start, at, m.end()):
            out.append(PiiSpan("email", start, m.end()))
            at = text.find("@", m.end())
        else:
            at = text.find("@", at + 1)


def _email_context_ok(text: str, start: int, at: int, end: int) -> bool:
    # "git@github.com:org/repo" is an SSH remote, not a mailbox.
    if text.startswith(":", end) and text[start:at] == "git":
        return False
    # "scheme://user:password@host": the part before "@" is a credential,
    # handled by the URL-password detector, not an address.
    if start and text[start - 1] == ":" and _URL_USERINFO_RE.search(text, max(0, start - 80), start):
        return False
    return True


# ---------------------------------------------------------------------------
# Numeric types: one chunking pass, specific patterns on small windows
# ---------------------------------------------------------------------------

# A run of digits and the separators numeric PII uses ("x" for phone
# extensions), at least 7 characters long -- nothing we detect is shorter --
# or the check digits of an IBAN (two letters, two digits).  Starting with a
# plain class lets `re` skip non-digits in C; the length floor keeps the
# many short numbers of ordinary text (years, prices, times) out of Python.
_CHUNK_RE = re.compile(r"[0-9](?:[0-9 ().:/+x-]{6,}|(?<=[A-Za-z]{2}[0-9])[0-9][0-9 ().:/+x-]*)")
_NOT_DIGITS = str.maketrans("", "", " ().:/+x-")
_ASCII_DIGITS = "0123456789"

# Context keywords ("card", "phone", "SSN", ...) count only when at most
# three letter-only words and some punctuation separate them from the
# candidate.  Digits or a "<PLACEHOLDER>" in between break the link, so a
# number that was already scrubbed can never lend its keyword to the next
# one -- which keeps scrub_pii idempotent.
_CTX_TAIL = r"(?:[^\w\n<>]{1,4}[^\W\d_]{1,12}){0,3}[^\w<>]{0,4}$"


def _ctx_re(keywords: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + keywords + r")" + _CTX_TAIL, re.I)


def _has_context(pattern: re.Pattern[str], text: str, start: int) -> bool:
    return pattern.search(text, max(0, start - 64), start) is not None


# -- credit cards -----------------------------------------------------------
# Contiguous 12-19 digits, or the layouts cards are printed in, with one
# consistent separator: 4-4-4-4 (and 4-4-4-1..3, 4-4-4-4-3) or 4-6-4/5
# (Diners, Amex).  A further group means a longer run of numbers.
_CC_RE = re.compile(
    r"[0-9](?:[0-9]{11,18}(?![\w])|[0-9]{3}([ .-])(?:[0-9]{6}\1[0-9]{4,5}"
    r"|[0-9]{4}\1[0-9]{4}\1[0-9]{1,4}(?:\1[0-9]{3})?)(?![\w]|\1[0-9]))"
)
_CARD_CTX_RE = _ctx_re(r"(?:card|cc|maestro|visa|mastercard|amex|debit|credit)s?\b\.?")


# Issuer (IIN) ranges and the lengths each brand issues.  Checking the
# brand shape before Luhn cuts random 13-19 digit numbers (seeds, ids,
# timestamps) to ~1% false passes instead of ~5%.
_CARD_BRANDS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("2200", "2204", frozenset({16, 17, 18, 19})),  # Mir
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("300", "305", frozenset({14, 16, 19})),  # Diners Club
    ("36", "36", frozenset({14, 16, 19})),
    ("38", "39", frozenset({14, 16, 19})),
    ("35", "35", frozenset({16, 17, 18, 19})),  # JCB (3528-3589 assigned, 35xx reserved)
    ("2131", "2131", frozenset({15})),  # JCB legacy 15-digit
    ("1800", "1800", frozenset({15})),
    ("6011", "6011", frozenset({16, 19})),  # Discover
    ("644", "649", frozenset({16, 19})),
    ("65", "65", frozenset({16, 19})),
    ("62", "62", frozenset({16, 17, 18, 19})),  # UnionPay
    ("81", "81", frozenset({16, 17, 18, 19})),
    ("50", "50", frozenset(range(12, 20))),  # Maestro
    ("56", "69", frozenset(range(12, 20))),
    ("1", "1", frozenset({15})),  # UATP
)


_CODE_BEFORE = frozenset("([{,=+-*/^%<>")
_CODE_AFTER = frozenset(")]},*/^%")


def _card_brand_ok(digits: str) -> bool:
    n = len(digits)
    for low, high, lengths in _CARD_BRANDS:
        if n in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def _cc_ok(text: str, start: int, end: int, raw: str) -> bool:
    digits = raw.replace(" ", "").replace("-", "").replace(".", "")
    n = len(digits)
    if n < 12 or n > 19 or not _card_brand_ok(digits) or not luhn_valid(digits):
        return False
    if n != len(raw):
        return True  # grouped "4111 1111 1111 1111": the grouping is the evidence
    if _has_context(_CARD_CTX_RE, text, start):
        return True
    # Without a card word nearby, a bare digit run must not look like a
    # number in code or maths: an argument, an operand, a float, an
    # exponent.  12-digit Maestro and 17-19 digit runs (ids, nanosecond
    # timestamps) always need the context.
    if n == 12 or n >= 17:
        return False
    before = text[max(0, start - 3) : start].rstrip(" \t")
    after = text[end : end + 3].lstrip(" \t")
    if before[-1:] in _CODE_BEFORE or before[-2:] in ("e-", "e+", "E-", "E+"):
        return False
    if text[end : end + 1] in ("e", "E") and text[end + 1 : end + 2] in ("+", "-", *_ASCII_DIGITS):
        return False  # mantissa of 1234567890123456e-5
    return not (after[:1] in _CODE_AFTER or (after[:1] == "." and after[1:2].isdigit()))


# -- SSNs -------------------------------------------------------------------
# Grouped "123-45-6789", or nine digits in a row ("123456789").
_SSN_RE = re.compile(r"[0-9]{3}(?:([- .])[0-9]{2}\1|[0-9]{2})[0-9]{4}(?![\w-]|\.[0-9])")
_SSN_CTX_RE = _ctx_re(r"(?:ssn|social security|soc\.? ?sec|taxpayer|tin)\b\.?|ss#")
# Other countries' taxpayer numbers have nine digits too: a bare run needs the SSN itself named.
_SSN_BARE_CTX_RE = _ctx_re(r"(?:ssn|social security|soc\.? ?sec)\b\.?|ss#")


def _ssn_ok(text: str, start: int, raw: str) -> bool:
    digits = raw.translate(_NOT_DIGITS)
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    # The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000.
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    # Nine digits in a row are any id, ZIP+4 or account number.
    if len(raw) == 9:
        return _has_context(_SSN_BARE_CTX_RE, text, start)
    # "123 45 6789" is also how street numbers, suites and phone fragments
    # line up, so the space-separated form needs the text to mention an SSN.
    if raw[3] == " ":
        return _has_context(_SSN_CTX_RE, text, start)
    return True


# -- IBAN -------------------------------------------------------------------
def _try_iban(text: str, start: int, out: list[PiiSpan]) -> None:
    if start and (text[start - 1].isalnum() or _placeholder_ends_at(text, start)):
        return
    length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return
    # Collect exactly `length` alphanumerics, allowing one kind of separator
    # (space or dash) only at 4-character group boundaries, as printed IBANs are.
    n = len(text)
    i, count, sep = start, 0, ""
    while count < length and i < n:
        ch = text[i]
        if ch.isascii() and ch.isalnum():
            count += 1
            i += 1
        elif ch in " -" and count and count % 4 == 0 and sep in ("", ch):
            sep = ch
            i += 1
        else:
            return
    # Must end at a token boundary; a following separate word is fine.
    if count == length and not (i < n and text[i].isalnum()) and iban_valid(text[start:i]):
        out.append(PiiSpan("iban", start, i))


# -- IPv4 -------------------------------------------------------------------
_IPV4_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(?:/[0-9]{1,2})?(?![\w]|\.[0-9])")
# Four dotted numbers after these words are versions or outline numbers.
_VERSION_CTX_RE = re.compile(
    r"(?:\bv|\bver|version|release|build|firmware|section|\bsec|§|clause|chapter|figure|\bfig"
    r"|table|step|item|paragraph|article|rule|appendix|isbn)\.?\s*[:=(\"'#\[]?\s*$",
    re.I,
)


_IP_CTX_RE = _ctx_re(
    r"(?:ip|ips|ipv4|address|addr|host|hostname|server|dns|ping|gateway|router|resolver"
    r"|nameserver|proxy|subnet|netmask|inet|bind|listen|localhost|connect\w*)\b:?"
)


def _ipv4_ok(text: str, start: int, addr: str, has_prefix: bool) -> bool:
    parts = addr.split(".")
    for part in parts:
        if (len(part) > 1 and part[0] == "0") or int(part) > 255:
            return False  # leading zeros are octal-ambiguous and rarely addresses
    # "3.2.2.5", "1.3.3.9": all-single-digit quads are section or version
    # numbers far more often than hosts.  Keep the famous all-equal ones
    # (1.1.1.1, 8.8.8.8, 0.0.0.0) and CIDR blocks; otherwise ask for context.
    if max(map(len, parts)) == 1 and len(set(parts)) > 1 and not has_prefix:
        return _has_context(_IP_CTX_RE, text, start)
    return True


# -- phones -----------------------------------------------------------------
_EXT = r"(?:[ \t]?(?:x|ext\.?|extension)[ \t]?[0-9]{1,6})?"
_PHONE_END = r"(?![\w]|[.-][0-9])"

# International: "+" then country code and groups.  Separators are optional
# so E.164 ("+447700677662") is covered; "(0)" trunk marks are allowed
# ("+41 (0)38 549 02 90").
_PHONE_INTL_RE = re.compile(r"\+[1-9][0-9]{0,2}(?:[ .-]?\([0-9]{1,4}\)|[ .-]?[0-9]{1,10}){1,7}" + _EXT + _PHONE_END)
_PHONE_00_RE = re.compile(
    r"00[1-9][0-9]{0,2}([ .-])\(?[0-9]{1,5}\)?(?:\1[0-9]{1,5}){1,6}(?!\1[0-9])" + _EXT + _PHONE_END
)
# North American: (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234.
_PHONE_NANP_RE = re.compile(
    r"(?:(?:1[ .-])?\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}"
    r"|(?:1([ .-])(?=[0-9]{3}\1))?[0-9]{3}([ .-])[0-9]{3}\2[0-9]{4})" + _EXT + _PHONE_END
)
# National numbers with a trunk "0": 020 7946 0958, 01.84.17.61.18,
# 0487 98 11 92, 06-10446904, 090-1234-5678, (08) 8747 6301.
_PHONE_TRUNK_RE = re.compile(
    r"(?:0[1-9][0-9]{0,3}([ .-])[0-9]{2,8}(?:\1[0-9]{2,8}){0,3}(?!\1[0-9])"
    r"|\(0[1-9][0-9]{0,3}\) ?[0-9]{2,5}(?:[ .-][0-9]{2,5}){0,3})" + _EXT + _PHONE_END
)
# Parenthesised area code without trunk 0: (11) 4706-6184, (22) 154-300.
_PHONE_PAREN_RE = re.compile(r"\([0-9]{2,4}\) ?[0-9]{3,5}[ .-][0-9]{3,4}" + _EXT + _PHONE_END)
# Any digit group; only accepted next to a phone keyword.
_PHONE_WEAK_RE = re.compile(r"[0-9][0-9 .-]{4,18}[0-9]" + _EXT + _PHONE_END)
# German (DIN 5008) layouts, also only next to a phone keyword: a slash after
# the area code ("030/1234567", "089 / 12 34 56-0", "+49 89 / 123 456"), a
# trunk code in brackets before an unbroken number or spaced ("(030) 1234567",
# "(0 30) 12 34 56") and a short extension after a hyphen ("030-123456-0").
# Dates, fractions and file references are written with slashes too, hence
# the keyword; a second slash ("01/05/2024") is never a phone number.
_PHONE_DIN_RE = re.compile(
    r"(?:(?:(?:\+[1-9][0-9]{0,2} ?(?:\(0\) ?)?[1-9][0-9]{0,4}|0[1-9][0-9]{1,4}) ?/ ?|\(0 ?[1-9][0-9]{0,4}\) ?)"
    r"[0-9]{2,8}(?: [0-9]{2,8}){0,3}(?:-[0-9]{1,5})?|0[1-9][0-9]{1,4}-[0-9]{3,8}-[0-9]{1,5})"
    + _EXT + _PHONE_END + r"(?!/[0-9])"
)

_PHONE_CTX_BEFORE_RE = _ctx_re(
    r"(?:phone|telephone|tel|mobile|mob|cell|cellphone|fax|call|desk|whatsapp|sms|contact|dial"
    r"|ph|hotline|telefon|telefono|téléphone|teléfono|tél)(?:s|ed|ing)?\b\.?"
)
_PHONE_CTX_AFTER_RE = re.compile(r"[ \t,(-]{0,3}(?:office|fax|mobile|cell|home|work|tel|phone)\b")

# Digit groups that are dates or year ranges, not phone numbers.
_DATE_RE = re.compile(
    r"(?:(?:19|20)[0-9]{2}([./ -])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|[12][0-9]|3[01])([./ -])(?:0?[1-9]|[12][0-9]|3[01])\2(?:19|20)?[0-9]{2})"
)
_YEAR_RANGE_RE = re.compile(r"(?:1[5-9]|20)[0-9]{2} ?- ?(?:1[5-9]|20)?[0-9]{2}")
_GROUP_SPLIT_RE = re.compile(r"[ .-]+")
_NON_DIGIT_RUN_RE = re.compile(r"[^0-9]+")
_EXT_SUFFIX_RE = re.compile(r"[ \t]?(?:x|ext\.?|extension)[ \t]?[0-9]{1,6}$")
_ZIP4_RE = re.compile(r"[0-9]{5}-[0-9]{4}")
_SPACE_GROUPED_RE = re.compile(r"\+?[0-9]+(?: [0-9]+)+")
_NUMBER_RE = re.compile(r"[0-9]+(?:[.,][0-9]+)*(?![^\W\d_])")
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([-:.])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w])")


def _phone_shape_ok(raw: str, min_digits: int) -> bool:
    core = _EXT_SUFFIX_RE.sub("", raw).strip()
    digits = core.translate(_NOT_DIGITS)
    if not min_digits <= len(digits) <= 15:  # E.164 caps numbers at 15 digits
        return False
    if core[0] == "+":
        # Without separators only a full E.164 number is convincing
        # ("+2147483647" is INT_MAX); with separators, a 10+ digit run is a
        # float or an id ("+1.4142135623731").
        if digits == core[1:]:
            return len(digits) >= 11
        if max(map(len, _NON_DIGIT_RUN_RE.split(core))) > 10:
            return False
    return not (_DATE_RE.fullmatch(core) or _YEAR_RANGE_RE.fullmatch(core) or _ZIP4_RE.fullmatch(core))


_PLACEHOLDER_VALUES = tuple(PLACEHOLDERS.values())


def _placeholder_ends_at(text: str, i: int) -> bool:
    # A placeholder stands in for the token it replaced: neighbour checks
    # must treat it like that token, or a second scrub pass would find
    # numbers that the first pass (correctly) left alone.
    return i > 0 and text[i - 1] == ">" and text.endswith(_PLACEHOLDER_VALUES, 0, i)


def _starts_cleanly(text: str, s: int) -> bool:
    """True when ``text[s]`` does not continue a word or a longer number."""
    if not s:
        return True
    prev = text[s - 1]
    if prev.isalnum() or prev in "_+/" or _placeholder_ends_at(text, s):
        return False
    return not (prev in ".-," and s >= 2 and (text[s - 2].isdigit() or _placeholder_ends_at(text, s - 1)))


def _phone_edges_ok(text: str, a: int, b: int, raw: str) -> bool:
    # "+" after an operand is arithmetic ("x[0]+1.41421356").
    if raw[0] == "+" and a and text[a - 1] in ")]":
        return False
    # A number grouped by spaces alone inside a longer run of space-separated
    # numbers is a table row or a hex dump ("1.001 159 652 1859 0.000 000"),
    # not a phone number. A phone word before it says otherwise ("Call 800 555
    # 0199 24 hours"), and so do brackets or hyphens ("(800) 555-0199 24 hours"),
    # which tables do not have.
    if _SPACE_GROUPED_RE.fullmatch(_EXT_SUFFIX_RE.sub("", raw).strip()) and not _has_context(
        _PHONE_CTX_BEFORE_RE, text, a
    ):
        # A leading "+" starts a new number whatever precedes it, and a single
        # digit before is a trunk prefix ("8 (41) 523 575").
        if (
            raw[0] != "+"
            and a >= 3
            and text[a - 1] == " "
            and ((text[a - 2].isdigit() and text[a - 3].isdigit()) or _placeholder_ends_at(text, a - 1))
        ):
            return False
        # What follows continues the run only when it is a number ("9am" is a time).
        if text[b : b + 1] == " " and (_NUMBER_RE.match(text, b + 1) or text.startswith(_PLACEHOLDER_VALUES, b + 1)):
            return False
    return True


def _short_group_before(text: str, a: int) -> bool:
    """True when ``text[:a]`` ends with a separate 1-6 digit group and a space.

    Such groups are never PII themselves, so a scrub pass cannot change
    this answer.
    """
    if a < 2 or text[a - 1] != " ":
        return False
    k = a - 1
    while k > 0 and text[k - 1].isdigit():
        k -= 1
    return 1 <= a - 1 - k <= 6 and (k == 0 or text[k - 1].isspace())


def _find_numeric(text: str, want: frozenset[str], out: list[PiiSpan]) -> None:
    n = len(text)
    want_iban = "iban" in want
    want_cc = "credit_card" in want
    want_ssn = "ssn" in want
    want_ip = "ip" in want
    want_phone = "phone" in want
    for m in _CHUNK_RE.finditer(text):
        s, e = m.span()
        # IBANs start with two letters right before the check digits.
        if want_iban and s >= 2 and text[s - 1].isalpha() and text[s - 2].isalpha():
            if e - s >= 2 and text[s + 1].isdigit():
                _try_iban(text, s - 2, out)
        while e > s and not text[e - 1].isdigit():
            e -= 1
        # Nothing numeric we detect fits in fewer than 7 characters
        # (the shortest is an IPv4 like 1.1.1.1).
        if e - s < 7:
            continue
        chunk = text[s:e]
        ndigits = len(chunk.translate(_NOT_DIGITS))
        if ndigits < 4:
            continue
        lo, hi = max(0, s - 2), min(n, e + 20)  # room for " extension 1234"
        if want_ip and chunk.count(".") >= 3:
            for mm in _IPV4_RE.finditer(text, s, hi):
                a = mm.start()
                addr, _, prefix = mm.group().partition("/")
                if not _starts_cleanly(text, a) or (a and text[a - 1] == "."):
                    continue
                if not _ipv4_ok(text, a, addr, bool(prefix) and int(prefix) <= 32):
                    continue
                if _VERSION_CTX_RE.search(text, max(0, a - 24), a):
                    continue
                end = a + len(addr) if prefix and int(prefix) > 32 else mm.end()
                out.append(PiiSpan("ip", a, end, "ipv4"))
        if ndigits < 7:
            continue
        if want_cc and ndigits >= 12:
            for mm in _CC_RE.finditer(text, s, hi):
                a = mm.start()
                if mm.group(1) == " " and _short_group_before(text, a):
                    continue  # one more space-separated group before it: a number table
                if _starts_cleanly(text, a) and text[a - 1 : a] != "." and _cc_ok(text, a, mm.end(), mm.group()):
                    out.append(PiiSpan("credit_card", a, mm.end()))
        if want_ssn and ndigits >= 9:
            for mm in _SSN_RE.finditer(text, s, hi):
                a = mm.start()
                if _starts_cleanly(text, a) and text[a - 1 : a] != "." and _ssn_ok(text, a, mm.group()):
                    out.append(PiiSpan("ssn", a, mm.end()))
        if want_phone:
            _phones_in_window(text, lo, hi, s, e, out)


def _phones_in_window(text: str, lo: int, hi: int, s: int, e: int, out: list[PiiSpan]) -> None:
    window = text[lo:e]
    patterns: list[tuple[re.Pattern[str], int, str]] = [(_PHONE_NANP_RE, 10, "nanp")]
    if "+" in window:
        patterns.append((_PHONE_INTL_RE, 8, "intl"))
    if "00" in window:
        patterns.append((_PHONE_00_RE, 10, "intl"))
    if "0" in window:
        patterns.append((_PHONE_TRUNK_RE, 9, "national"))
    if "(" in window:
        patterns.append((_PHONE_PAREN_RE, 8, "national"))
    found = False
    for pattern, min_digits, subtype in patterns:
        for mm in pattern.finditer(text, lo, hi):
            a = mm.start()
            if a >= e:
                break  # belongs to the next chunk; it is handled there
            if not _starts_cleanly(text, a) or "isbn" in text[max(0, a - 12) : a].lower():
                continue
            if _MAC_RE.match(text, a):
                continue  # 01-23-45-67-89-AB is a MAC address
            raw = mm.group()
            if not _phone_edges_ok(text, a, mm.end(), raw):
                continue
            # "(2019) 123-145" is a year and a page range.
            if raw[0] == "(" and raw[1:3] in ("19", "20") and raw[5:6] == ")":
                continue
            if _phone_shape_ok(raw, min_digits):
                out.append(PiiSpan("phone", a, mm.end(), subtype))
                found = True
    # Whatever else the window holds: once that is scrubbed, a second pass must
    # find the same.
    if "/" in window or "(" in window or "-" in window:
        for mm in _PHONE_DIN_RE.finditer(text, lo, hi):
            if mm.start() < e:
                _phone_in_context(text, mm.start(), mm.end(), mm.group(), 9, out)
    if found:
        return
    # Weak candidates (local numbers like "329 7730", bare "5321234567") are
    # phone numbers only when the surrounding words say so.
    for mm in _PHONE_WEAK_RE.finditer(text, s, hi):
        raw = mm.group()
        # Phone groups have at least two digits ("1 234 567" is a number
        # with thousands separators, "978-3-16-148410-0" an ISBN).
        if any(len(g) < 2 for g in _GROUP_SPLIT_RE.split(_EXT_SUFFIX_RE.sub("", raw).strip())):
            continue
        _phone_in_context(text, mm.start(), mm.end(), raw, 7, out)


def _phone_in_context(text: str, a: int, b: int, raw: str, min_digits: int, out: list[PiiSpan]) -> None:
    if not _starts_cleanly(text, a) or not _phone_shape_ok(raw, min_digits):
        return
    if not _phone_edges_ok(text, a, b, raw) or "isbn" in text[max(0, a - 12) : a].lower():
        return
    if _has_context(_PHONE_CTX_BEFORE_RE, text, a) or _PHONE_CTX_AFTER_RE.match(text[b : b + 16].lower()):
        out.append(PiiSpan("phone", a, b, "context"))


# -- IPv6 -------------------------------------------------------------------
# Candidate shape only; ipaddress.IPv6Address does the real validation, which
# is what rejects times (12:30:45), MACs, ratios and C++ scopes.
_IPV6_RE = re.compile(
    r"(?:[0-9A-Fa-f]{1,4}:|:(?=:))(?:[0-9A-Fa-f]{0,4}:){1,7}"
    r"(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?:%[0-9A-Za-z]{1,16})?(?:/[0-9]{1,3})?(?![\w:]|\.[0-9])"
)
# Uncompressed addresses have at least six colons between hex groups; this
# literal-prefixed probe is cheap and gates the full-form search.
_IPV6_FULL_HINT_RE = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")


def _ipv6_plausible(bare: str) -> bool:
    """Filter shapes that ipaddress accepts but that are code, not addresses."""
    if "." in bare:
        return True  # embedded IPv4 (::ffff:192.0.2.1) is unambiguous
    groups = [g for g in bare.split(":") if g]
    # "::", "::1", "1::2" are Python slices (a[::2]), Haskell's "::" or the
    # loopback address -- none of them identify anyone.  Hex-letter-only
    # forms ("a::b", "dead::beef") are C++/Ruby scopes.
    if sum(map(len, groups)) < 4 or not any(c.isdigit() for c in bare):
        return False
    # "a[10::20]": two decimal groups around "::" is a slice.
    return not ("::" in bare and len(groups) <= 2 and all(g.isdigit() for g in groups))


def _try_ipv6(text: str, anchor: int, out: list[PiiSpan]) -> int:
    """Validate the IPv6 candidate around ``anchor``; return where to resume."""
    start = anchor
    limit = max(0, anchor - 40)
    while start > limit and text[start - 1] in _HEX_COLON:
        start -= 1
    if start and (text[start - 1].isalnum() or text[start - 1] in "_."):
        return anchor + 2
    m = _IPV6_RE.match(text, start)
    if m is None:
        return anchor + 2
    addr, _, prefix = m.group().partition("/")
    end = m.end()
    if prefix and int(prefix) > 128:
        end = start + len(addr)
        prefix = ""
    bare = addr.partition("%")[0]
    if not (_ipv6_plausible(bare) or (bare == "::" and prefix)):
        return max(end, anchor + 2)
    try:
        ipaddress.IPv6Address(bare)
    except ValueError:
        return max(end, anchor + 2)
    out.append(PiiSpan("ip", start, end, "ipv6"))
    return max(end, anchor + 2)


def _find_ipv6(text: str, out: list[PiiSpan]) -> None:
    pos = text.find("::")
    while pos >= 0:
        pos = text.find("::", _try_ipv6(text, pos, out))
    hint = _IPV6_FULL_HINT_RE.search(text)
    while hint is not None:
        hint = _IPV6_FULL_HINT_RE.search(text, _try_ipv6(text, hint.start(), out))


# ---------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------

_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _b64url_decode(segment: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None


def _jwt_ok(token: str) -> bool:
    # Decoding the header is what separates a JWT from any dotted base64 blob.
    raw = _b64url_decode(token.partition(".")[0])
    if raw is None:
        return False
    try:
        return isinstance(json.loads(raw), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _mixed_alnum(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def _not_repetitive(token: str) -> bool:
    # "glagent-XXXXXXXX..." style placeholders.
    return len(set(token)) > 6


# Each pattern starts with a literal, which `re` finds with a fast skip loop
# (~1-2 us per 3 KB), so the whole table costs little more than one regex
# scan.  Alternatives sharing a first letter are merged; the named group
# that matched is the subtype.
_TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"A(?:(?P<aws_access_key>(?:KIA|SIA|BIA|CCA|3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9]))"
        r"|(?P<gcp_api_key>Iza[0-9A-Za-z_-]{35}(?![\w-])))"
    ),
    # GitLab token formats (prefix -> body length) follow GitLab's token docs.
    re.compile(
        r"g(?:(?P<github_token>h[pousr]_[A-Za-z0-9]{36}(?![A-Za-z0-9])|ithub_pat_[A-Za-z0-9_]{22,255})"
        r"|(?P<gitlab_token>l(?:(?:pat|dt|soat|cbt|rt|ft)-[\w-]{20,50}|imt-[\w-]{25}|ptt-[\w-]{40}"
        r"|oas-[\w-]{64}|agent-[\w-]{50,1024})(?![\w-])))"
    ),
    re.compile(r"(?P<gitlab_token>GR1348941[\w-]{20,50}(?![\w-]))"),
    re.compile(r"(?P<slack_token>x(?:ox[abporse]-[0-9A-Za-z][0-9A-Za-z-]{8,}|app-[0-9]-[0-9A-Za-z-]{10,}))"),
    re.compile(
        r"h(?:(?P<slack_webhook>ttps?://hooks\.slack\.com/(?:services|workflows|triggers)/[\w/+-]{16,})"
        r"|(?P<huggingface_token>f_[A-Za-z]{34}(?![A-Za-z0-9])))"
    ),
    re.compile(
        r"s(?:(?P<api_key>k-(?:ant-(?:api|admin)[0-9]{2}-[\w-]{20,}|(?:proj|svcacct|admin)-[\w-]{20,}"
        r"|[A-Za-z0-9]{32,})(?![\w-]))|(?P<stripe_key>k_(?:live|test)_[0-9A-Za-z]{16,})"
        r"|(?P<square_token>q0(?:csp|atp)-[\w-]{22,}))"
    ),
    re.compile(r"(?P<stripe_key>rk_(?:live|test)_[0-9A-Za-z]{16,})"),
    re.compile(r"(?P<sendgrid_key>SG\.[\w-]{16,32}\.[\w-]{16,64})"),
    re.compile(r"(?P<npm_token>npm_[A-Za-z0-9]{36}(?![A-Za-z0-9]))"),
    re.compile(r"(?P<pypi_token>pypi-AgE[\w-]{100,})"),
    re.compile(r"(?P<google_oauth_token>ya29\.[\w-]{20,})"),
    re.compile(r"(?P<jwt>eyJ[\w-]{8,}\.eyJ[\w-]{8,}(?:\.[\w-]+)?)"),
)
_TOKEN_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "jwt": _jwt_ok,
    "api_key": _mixed_alnum,
    "gitlab_token": _not_repetitive,
}
# These two do not start with a literal (and always contain digits); a
# substring probe gates them.
_PROBED_TOKENS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (":AA", re.compile(r"[0-9]{8,10}:AA[\w-]{33}(?![\w-])"), "telegram_bot_token"),
    ("-us", re.compile(r"[0-9a-f]{32}-us[0-9]{1,2}(?![\w-])"), "mailchimp_key"),
)


def _find_tokens(text: str, has_digit: bool, out: list[PiiSpan]) -> None:
    for pattern in _TOKEN_PATTERNS:
        for m in pattern.finditer(text):
            s = m.start()
            subtype = m.lastgroup or ""
            if s and text[s - 1] in _TOKEN_CHARS and subtype != "slack_webhook":
                continue  # inside a longer token, e.g. "testAKIA..." or "foo_ghp_..."
            validator = _TOKEN_VALIDATORS.get(subtype)
            if validator is not None and not validator(m.group()):
                continue
            out.append(PiiSpan("secret", s, m.end(), subtype))
    if not has_digit:
        return
    for probe, pattern, subtype in _PROBED_TOKENS:
        if probe in text:
            for m in pattern.finditer(text):
                s = m.start()
                if not (s and text[s - 1] in _TOKEN_CHARS):
                    out.append(PiiSpan("secret", s, m.end(), subtype))


_PEM_BEGIN_RE = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----")
# Body lines of a PEM block, also when newlines are JSON-escaped ("\n").
_PEM_BODY_RE = re.compile(r"(?:(?:\\r|\\n|\s)+(?:[A-Za-z0-9+/=]{8,}|[A-Za-z-]+: [^\n\\]*))+")


def _find_private_keys(text: str, out: list[PiiSpan]) -> None:
    for m in _PEM_BEGIN_RE.finditer(text):
        label = f"-----END {m.group(1)}PRIVATE KEY{m.group(2) or ''}-----"
        end = text.find(label, m.end(), m.end() + 20000)
        if end >= 0:
            out.append(PiiSpan("secret", m.start(), end + len(label), "private_key"))
            continue
        # Truncated block (no END line): take the header and whatever base64
        # body follows so no key material is left behind.
        body = _PEM_BODY_RE.match(text, m.end())
        out.append(PiiSpan("secret", m.start(), body.end() if body else m.end(), "private_key"))


# Key names that hold secrets.  The keyword must END the key name
# ("AUTH_TOKEN", "db_password", "secretKey") so that "token_count",
# "password_field" or "secretary" never trigger.  A bare trailing "key"
# (vendor_key, sl-key) is accepted with a stricter value test.
_KEY_TAIL_RE = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|pw|secret|token|auth|authorization|credentials?"
    r"|api[_-]?key|apikey"
    r"|(?:access|secret|private|auth|client|account|encryption|signing|master|app|service"
    r"|storage|iam|cloud|consumer|subscription|license)[_-]?key"
    r"|sess(?:ion)?[_-]?id|(?P<generic>key))$",
    re.I,
)
# Keywords too short to trust inside a single-case word: "bypass",
# "compass", "monkey" must not count, "sl_pass" and "ibmKey" must.
_WEAK_KEYWORDS = frozenset({"pass", "auth", "pw", "key"})
# "*_token" / "*_key" names that are not credentials (ML vocab tokens,
# pagination, database and UI keys).
_NON_SECRET_KEY_RE = re.compile(
    r"(?:^|[_.-]|(?-i:(?<=[a-z])(?=[A-Z])))(?:eos|bos|pad|unk|mask|sep|cls|special|start|end|next"
    r"|page|continuation|max|min|num|prev|previous|sync|cancellation|first|last|image|audio|video"
    r"|public|primary|foreign|sort|partition|cache|lookup|hash|row|index|unique|composite|object"
    r"|idempotency|routing|shard|group|label|map|dict|field|column|table|search|translation"
    r"|i18n|message|locale|hot|short|keyboard|hotkey|registry|dedup|join|range|cluster|redis"
    r"|s3|file|asset)[_-]?(?:tokens?|keys?)$",
    re.I,
)
_KEY_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
# Last three letters of every keyword above: a set lookup rejects almost
# every "=" / ":" in code before any regex runs.
_KEY_TAILS = frozenset(
    {"ord", "swd", "ase", "ass", "pwd", "ret", "ken", "uth", "ion", "ial", "als", "key", "sid", "nid", "_id", "-id"}
)
_ASSIGN_VALUE_RE = re.compile(
    r"[ \t]*(?:(?:bearer|basic|token|digest)[ \t]+)?"
    r"(?:([\"'`])([^\"'`\s]{8,4096})\1|([^\s\"'`,;&<>(){}\[\]|\\]{8,4096}))",
    re.I,
)
_CLI_SECRET_RE = re.compile(
    r"--[\w-]*?(?:password|passwd|pass|pwd|secret|token|api[_-]?key|apikey)(?:[ \t]+|=)"
    r"(?:([\"'])([^\"'\s]{8,4096})\1|([^\s\"'`,;&<>(){}\[\]|\\]{8,4096}))",
    re.I,
)
_PLACEHOLDER_RE = re.compile(
    r"^(?:[$%{<\[@*#.]|~/|\./|/)|xxxx|\*\*\*|\.\.\.|your[_-]|_here\b|changeme|placeholder"
    r"|redacted|dummy|environ|process\.env|getenv|^(?:null|none|true|false|undefined)$",
    re.I,
)


def _looks_secret(value: str, generic_key: bool = False) -> bool:
    if len(value) < 8 or "://" in value or _PLACEHOLDER_RE.search(value):
        return False
    has_digit = has_lower = has_upper = has_other = False
    for c in value:
        if c.isdigit():
            has_digit = True
        elif c.islower():
            has_lower = True
        elif c.isupper():
            has_upper = True
        else:
            has_other = True
    if not (has_lower or has_upper):
        return False  # pure digits: ports, counts, ids
    if generic_key:
        # "cache_key = user:1234:profile" — only long, random-looking
        # values count for names that merely end in "key".
        return len(value) >= 16 and has_digit and not any(c in value for c in ".:/@")
    # Real keys and passwords almost always mix letters with digits; a value
    # of letters only must at least mix case *and* punctuation to count
    # (rules out identifiers like "request.form.password" or "YOUR_API_KEY").
    return has_digit or (has_lower + has_upper + has_other) >= 3


_DOTTED_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _is_code_expression(text: str, value: str, end: int) -> bool:
    """Unquoted values that are program text: calls, attribute access, variables."""
    if text[end : end + 1] in ("(", "["):
        return True  # token = make_token(...), key = keys[0]
    if _DOTTED_IDENTIFIER_RE.fullmatch(value) and sum(c.isdigit() for c in value) < 2:
        return True  # token = Keyword.Type, secret = settings.SECRET (not base64 "eyJ...J9.x.y")
    # A plain identifier needs several digits to look generated rather
    # than named (AUTH_TOKEN=abcDEF123456 yes, token = token_v2 no).
    return _IDENTIFIER_RE.fullmatch(value) is not None and sum(c.isdigit() for c in value) < 2


def _secret_key_kind(text: str, name_end: int) -> str | None:
    """Classify the key name ending at ``name_end``: "strong", "generic" or None."""
    start = name_end
    limit = max(0, name_end - 80)
    while start > limit and text[start - 1] in _KEY_NAME_CHARS:
        start -= 1
    key = text[start:name_end]
    m = _KEY_TAIL_RE.search(key)
    if m is None or _NON_SECRET_KEY_RE.search(key):
        return None
    kind = "generic" if m.group("generic") else "strong"
    kw_start = m.start()
    if kw_start == 0:
        # A bare "key" is a dict / cache / sort key far more often than a credential.
        return None if kind == "generic" else kind
    prev, first = key[kw_start - 1], key[kw_start]
    if prev in "_.-" or prev.isdigit() or (prev.islower() and first.isupper()):
        return kind
    # Single-case names ("SOFTLAYERAPIKEY", "ibmcos_secretkey") give no
    # segment boundary to check; trust them except for the weak keywords.
    return None if m.group().lower() in _WEAK_KEYWORDS else kind


def _try_assignment(text: str, op: int, out: list[PiiSpan]) -> None:
    n = len(text)
    nxt = text[op + 1] if op + 1 < n else ""
    prev = text[op - 1] if op else ""
    if text[op] == "=":
        if nxt == "=" or prev in "=!<>":
            return  # comparison, not assignment
        value_at = op + 2 if nxt == ">" else op + 1
    else:
        if nxt == ":" or prev == ":":
            return  # C++/Rust scope, IPv6
        value_at = op + 2 if nxt == "=" else op + 1
    j = op
    while j and text[j - 1] in " \t":
        j -= 1
    if j and text[j - 1] in "\"'":
        j -= 1
    tail = text[max(0, j - 3) : j].lower()
    if tail not in _KEY_TAILS and tail[-2:] != "pw":
        return  # cheap reject: no keyword can end here
    kind = _secret_key_kind(text, j)
    if kind is None:
        return
    v = _ASSIGN_VALUE_RE.match(text, value_at)
    if v is None:
        return
    if v.group(2) is not None:
        group = 2
    else:
        group = 3
        if _is_code_expression(text, v.group(3), v.end(3)):
            return
    if _looks_secret(v.group(group), generic_key=kind == "generic"):
        out.append(PiiSpan("secret", v.start(group), v.end(group), "assignment"))


def _find_assignments(text: str, out: list[PiiSpan]) -> None:
    # Walk the operators with str.find: far cheaper than a regex scan for
    # keywords, and prose has few "=" and ":" characters.
    for op_char in "=:":
        op = text.find(op_char)
        while op >= 0:
            _try_assignment(text, op, out)
            op = text.find(op_char, op + 1)
    if "--" in text:
        for m in _CLI_SECRET_RE.finditer(text):
            group = 2 if m.group(2) is not None else 3
            if _looks_secret(m.group(group)):
                out.append(PiiSpan("secret", m.start(group), m.end(group), "assignment"))


_URL_CRED_RE = re.compile(r"://([^\s:/@\"'<>]{1,128}):([^\s/@\"'<>]{3,256})@[\w.-]+")
_URL_PASSWORD_PLACEHOLDERS = frozenset(
    {"password", "pass", "passwd", "pwd", "secret", "xxx", "xxxx", "****", "changeme", "token"}
)


def _find_url_credentials(text: str, out: list[PiiSpan]) -> None:
    for m in _URL_CRED_RE.finditer(text):
        pw = m.group(2)
        low = pw.lower()
        if low in _URL_PASSWORD_PLACEHOLDERS or pw[0] in "$<{%[*":
            continue
        # "postgres:postgres@", "user:mypassword@": defaults and placeholders.
        if pw == m.group(1) or "password" in low or "passwd" in low:
            continue
        if pw.isdigit() and len(pw) <= 5:
            continue  # "host:8080@..." is a port, not a password
        out.append(PiiSpan("secret", m.start(2), m.end(2), "url_password"))


def _find_secrets(text: str, has_digit: bool, out: list[PiiSpan]) -> None:
    _find_tokens(text, has_digit, out)
    if "PRIVATE KEY" in text:
        _find_private_keys(text, out)
    _find_assignments(text, out)
    if "://" in text and "@" in text:
        _find_url_credentials(text, out)


# ---------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------


def _candidates(text: str, types: frozenset[str]) -> list[PiiSpan]:
    out: list[PiiSpan] = []
    # Ten single-character probes (memchr) beat one regex scan for a digit.
    has_digit = any(d in text for d in _ASCII_DIGITS)
    if "secret" in types:
        _find_secrets(text, has_digit, out)
    if "email" in types and "@" in text:
        _find_emails(text, out)
    if has_digit:
        if types & {"credit_card", "ssn", "iban", "ip", "phone"}:
            _find_numeric(text, types, out)
        if "ip" in types and ("::" in text or text.count(":") >= 6):
            _find_ipv6(text, out)
    return out


def _resolve(cands: list[PiiSpan]) -> list[PiiSpan]:
    """Greedy non-overlapping selection: priority first, then length, then position."""
    if len(cands) <= 1:
        return cands
    cands.sort(key=lambda p: (-_PRIORITY[p.type], p.start - p.end, p.start))
    starts: list[int] = []
    ends: dict[int, int] = {}
    kept: list[PiiSpan] = []
    for span in cands:
        if span.end <= span.start:
            continue
        # Kept spans are disjoint, so only the one starting last before
        # `span.end` can overlap `span`.
        i = bisect_left(starts, span.end)
        if i and ends[starts[i - 1]] > span.start:
            continue
        insort(starts, span.start)
        ends[span.start] = span.end
        kept.append(span)
    kept.sort(key=lambda p: p.start)
    return kept


def find_pii(text: str, types: Iterable[str] = PII_TYPES) -> list[PiiSpan]:
    """Return non-overlapping PII spans of the requested ``types``, sorted by start.

    Overlaps are resolved by type priority (secret > credit_card / iban / ssn
    > email > ip > phone), then by length.  Detectors of higher priority than
    the requested types also run, so a card number is never reported as a
    phone number just because only phones were asked for.
    """
    wanted = frozenset(_check_types(types))
    if not wanted or not text:
        return []
    floor = min(_PRIORITY[t] for t in wanted)
    run = frozenset(t for t, p in _PRIORITY.items() if p >= floor)
    spans = _resolve(_candidates(text, run))
    if run != wanted:
        spans = [s for s in spans if s.type in wanted]
    return spans


_DEFAULT_CONFIG = PiiConfig()


def scrub_pii(text: str, config: PiiConfig = _DEFAULT_CONFIG) -> tuple[str, dict[str, int]]:
    """Replace PII with type placeholders; return the new text and per-type counts.

    Counts cover every type in :data:`PII_TYPES` (0 when none was found).
    For secret assignments only the value is replaced, so
    ``api_key = "abc..."`` becomes ``api_key = "<SECRET>"``.
    """
    counts = dict.fromkeys(PII_TYPES, 0)
    spans = find_pii(text, config.types)
    if not spans:
        return text, counts
    parts: list[str] = []
    pos = 0
    for span in spans:
        parts.append(text[pos : span.start])
        parts.append(PLACEHOLDERS[span.type])
        counts[span.type] += 1
        pos = span.end
    parts.append(text[pos:])
    return "".join(parts), counts
