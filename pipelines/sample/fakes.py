"""Deterministic fake PII, fake secrets and harmless PII look-alikes.

Everything here is synthetic and generated from a caller-supplied :class:`random.Random`,
so the sample corpus is reproducible. Checksummed identifiers are *valid* on purpose
(credit-card numbers pass the Luhn check, IBANs pass the ISO 13616 mod-97 check, SSNs lie in
the issued ranges) so that a scrubber which validates checksums still has something to find.
Look-alikes (ISBNs, order numbers, versions, hashes, UUIDs, dates) are built so that they do
*not* pass those checks and should survive scrubbing.
"""

from __future__ import annotations

import base64
import json
import random
import string

DIGITS = string.digits
HEX = "0123456789abcdef"
ALNUM = string.ascii_letters + string.digits
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
UPPER_ALNUM = string.ascii_uppercase + string.digits

# ASCII names used for e-mail addresses and forms (all invented combinations).
FIRST_NAMES = [
    "anna", "ben", "carla", "david", "elena", "felix", "greta", "hugo", "ines", "jonas",
    "karin", "lars", "maria", "nina", "oskar", "paula", "quentin", "rosa", "sven", "tessa",
    "ulrich", "vera", "walter", "yusuf", "zoe", "marek", "aiko", "li", "omar", "priya",
]
LAST_NAMES = [
    "keller", "moreau", "rossi", "silva", "jansen", "novak", "berg", "lopez", "fischer",
    "dubois", "bianchi", "costa", "visser", "kowalski", "lindqvist", "yilmaz", "tanaka",
    "chen", "haddad", "okafor", "schmidt", "martin", "ferreira", "petrov", "nakamura",
]
# Reserved (RFC 2606 / RFC 6761) domains only, so no real mailbox is ever named.
EMAIL_DOMAINS = [
    "example.com", "example.org", "example.net", "mail.example.com", "post.example.org",
    "firma.example", "uni.example.edu", "kontor.test", "shop.example.net", "inbox.test",
]


def digits(rng: random.Random, k: int) -> str:
    """Return ``k`` random decimal digits."""
    return "".join(rng.choice(DIGITS) for _ in range(k))


def pick(rng: random.Random, alphabet: str, k: int) -> str:
    """Return ``k`` random characters from ``alphabet``."""
    return "".join(rng.choice(alphabet) for _ in range(k))


def person(rng: random.Random) -> tuple[str, str]:
    """Return a (first, last) ASCII name pair, capitalised."""
    return rng.choice(FIRST_NAMES).capitalize(), rng.choice(LAST_NAMES).capitalize()


def email(rng: random.Random, first: str | None = None, last: str | None = None) -> str:
    """Return a fake e-mail address on a reserved domain."""
    first = (first or rng.choice(FIRST_NAMES)).lower()
    last = (last or rng.choice(LAST_NAMES)).lower()
    style = rng.randrange(5)
    if style == 0:
        local = f"{first}.{last}"
    elif style == 1:
        local = f"{first[0]}{last}"
    elif style == 2:
        local = f"{first}{rng.randint(1, 99)}"
    elif style == 3:
        local = f"{first}_{last}{rng.randint(70, 99)}"
    else:
        local = f"{last}.{first}"
    return f"{local}@{rng.choice(EMAIL_DOMAINS)}"


# --------------------------------------------------------------------------- phones

LANG_COUNTRIES: dict[str, list[str]] = {
    "en": ["US", "GB", "AU", "IN"], "de": ["DE"], "fr": ["FR"], "es": ["ES"], "it": ["IT"],
    "pt": ["PT", "BR"], "nl": ["NL"], "ru": ["RU"], "ja": ["JP"], "pl": ["PL"], "sv": ["SE"],
}


def phone(rng: random.Random, country: str | None = None) -> str:
    """Return a phone number in a national or international format of ``country``."""
    c = country or rng.choice(["US", "GB", "DE", "FR", "ES", "IT", "NL", "JP", "BR", "IN"])
    d = lambda k: digits(rng, k)  # noqa: E731
    options: dict[str, list[str]] = {
        # 555-01xx and the Ofcom 7946 0xxx / 7700 900xxx ranges are reserved for fiction.
        "US": [f"+1 ({rng.choice(['212', '415', '312', '617', '206'])}) 555-01{d(2)}",
               f"+1-303-555-01{d(2)}", f"(646) 555-01{d(2)}"],
        "GB": [f"+44 20 7946 0{d(3)}", f"+44 7700 900{d(3)}", f"020 7946 0{d(3)}"],
        "AU": [f"+61 4{d(2)} {d(3)} {d(3)}", f"(02) 5550 {d(4)}"],
        "IN": [f"+91 98{d(3)} {d(5)}", f"+91-22-{d(8)}"],
        "DE": [f"+49 30 {d(8)}", f"+49 (0)89 {d(3)} {d(4)}", f"0171 {d(7)}", f"+49 1512 {d(7)}"],
        "FR": [f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}", f"01 {d(2)} {d(2)} {d(2)} {d(2)}",
               f"+33 (0)4 {d(2)} {d(2)} {d(2)} {d(2)}"],
        "ES": [f"+34 6{d(2)} {d(3)} {d(3)}", f"+34 91 {d(3)} {d(2)} {d(2)}"],
        "IT": [f"+39 3{d(2)} {d(3)} {d(4)}", f"+39 06 {d(4)} {d(4)}"],
        "NL": [f"+31 6 {d(8)}", f"+31 20 {d(3)} {d(4)}", f"06-{d(8)}"],
        "PT": [f"+351 9{d(2)} {d(3)} {d(3)}", f"+351 21 {d(3)} {d(4)}"],
        "BR": [f"+55 11 9{d(4)}-{d(4)}", f"(21) 9{d(4)}-{d(4)}"],
        "JP": [f"+81 3-{d(4)}-{d(4)}", f"090-{d(4)}-{d(4)}"],
        "RU": [f"+7 495 {d(3)}-{d(2)}-{d(2)}", f"+7 (912) {d(3)}-{d(2)}-{d(2)}"],
        "PL": [f"+48 {d(3)} {d(3)} {d(3)}", f"+48 22 {d(3)} {d(2)} {d(2)}"],
        "SE": [f"+46 8 {d(3)} {d(2)} {d(2)}", f"070-{d(3)} {d(2)} {d(2)}"],
    }
    return rng.choice(options[c])


# --------------------------------------------------------------------------- networks


def ipv4(rng: random.Random) -> str:
    """Return an IPv4 address from documentation (RFC 5737) or private ranges."""
    kind = rng.randrange(6)
    if kind == 0:
        return f"192.0.2.{rng.randint(1, 254)}"
    if kind == 1:
        return f"198.51.100.{rng.randint(1, 254)}"
    if kind == 2:
        return f"203.0.113.{rng.randint(1, 254)}"
    if kind == 3:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if kind == 4:
        return f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    """Return an IPv6 address in the documentation prefix 2001:db8::/32."""
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(6)]
    if rng.random() < 0.5:
        return "2001:db8:" + ":".join(groups)
    return f"2001:db8:{groups[0]}::{groups[1]}:{groups[2]}"


# --------------------------------------------------------------------------- checksummed ids


def luhn_check_digit(partial: str) -> str:
    """Return the Luhn check digit that makes ``partial + digit`` valid."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Return True when the digits of ``number`` pass the Luhn check."""
    ds = [c for c in number if c.isdigit()]
    if len(ds) < 2:
        return False
    return luhn_check_digit("".join(ds[:-1])) == ds[-1]


def credit_card(rng: random.Random) -> str:
    """Return a Luhn-valid card number (Visa, Mastercard, Amex or Discover layout)."""
    kind = rng.randrange(4)
    if kind == 0:
        prefix, length = "4", 16
    elif kind == 1:
        prefix, length = str(rng.randint(51, 55)), 16
    elif kind == 2:
        prefix, length = rng.choice(["34", "37"]), 15
    else:
        prefix, length = "6011", 16
    body = prefix + digits(rng, length - len(prefix) - 1)
    number = body + luhn_check_digit(body)
    style = rng.randrange(3)
    if style == 2:
        return number
    sep = " " if style == 0 else "-"
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


def ssn(rng: random.Random) -> str:
    """Return a US SSN inside the issued ranges (area 001-899 except 666)."""
    area = rng.randint(1, 899)
    while area == 666:
        area = rng.randint(1, 899)
    group, serial = rng.randint(1, 99), rng.randint(1, 9999)
    sep = rng.choice(["-", "-", "-", " "])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def iban_check_digits(country: str, bban: str) -> str:
    """Compute the two ISO 13616 check digits for ``country`` + ``bban``."""
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    return f"{98 - number % 97:02d}"


def iban_valid(text: str) -> bool:
    """Return True when ``text`` (spaces allowed) is an IBAN with correct check digits."""
    s = text.replace(" ", "").upper()
    if len(s) < 15 or not s[:2].isalpha() or not s[2:4].isdigit():
        return False
    rearranged = s[4:] + s[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def iban(rng: random.Random, country: str | None = None) -> str:
    """Return an IBAN with correct mod-97 check digits (DE, GB, FR, NL, ES, IT)."""
    c = country or rng.choice(["DE", "GB", "FR", "NL", "ES", "IT"])
    up = string.ascii_uppercase
    if c == "DE":
        bban = digits(rng, 18)
    elif c == "GB":
        bban = pick(rng, up, 4) + digits(rng, 14)
    elif c == "FR":
        bban = digits(rng, 10) + pick(rng, UPPER_ALNUM, 11) + digits(rng, 2)
    elif c == "NL":
        bban = pick(rng, up, 4) + digits(rng, 10)
    elif c == "ES":
        bban = digits(rng, 20)
    else:
        c = "IT"
        bban = pick(rng, up, 1) + digits(rng, 10) + pick(rng, UPPER_ALNUM, 12)
    value = c + iban_check_digits(c, bban) + bban
    if rng.random() < 0.6:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


# --------------------------------------------------------------------------- secrets


def aws_access_key_id(rng: random.Random) -> str:
    """Return a fake AWS access key id (AKIA + 16 base32 characters)."""
    return "AKIA" + pick(rng, BASE32, 16)


def aws_secret_key(rng: random.Random) -> str:
    """Return a fake 40-character AWS secret access key."""
    return pick(rng, ALNUM + "/+", 40)


def github_token(rng: random.Random) -> str:
    """Return a fake GitHub personal access token (ghp_ + 36 characters)."""
    return "ghp_" + pick(rng, ALNUM, 36)


def slack_token(rng: random.Random) -> str:
    """Return a fake Slack bot token."""
    return f"xoxb-{digits(rng, 11)}-{digits(rng, 13)}-{pick(rng, ALNUM, 24)}"


def pem_private_key(rng: random.Random) -> str:
    """Return a fake PEM private-key block (random bytes, not a real key)."""
    label = rng.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = base64.b64encode(rng.randbytes(48 * rng.randint(6, 12))).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def jwt(rng: random.Random) -> str:
    """Return a fake HS256 JSON Web Token with a random signature."""
    first, last = person(rng)
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": digits(rng, 10), "name": f"{first} {last}", "iat": 1600000000 + rng.randint(0, 10**8)}
    parts = [
        _b64url(json.dumps(header, separators=(",", ":")).encode()),
        _b64url(json.dumps(payload, separators=(",", ":")).encode()),
        _b64url(rng.randbytes(32)),
    ]
    return ".".join(parts)


def api_key_line(rng: random.Random) -> str:
    """Return a config line assigning a fake API key."""
    key = rng.choice(["api_key", "API_KEY", "apiKey", "secret_key", "access_token"])
    value = rng.choice(["", "sk_", "key-", "live_"]) + pick(rng, ALNUM, 32)
    return rng.choice([f'{key} = "{value}"', f"{key}: {value}", f"{key.upper()}={value}"])


# --------------------------------------------------------------------------- look-alikes


def version(rng: random.Random) -> str:
    """Return a semantic version string such as ``v2.14.3`` or ``1.0.7-rc.2``."""
    v = f"{rng.randint(0, 12)}.{rng.randint(0, 40)}.{rng.randint(0, 30)}"
    style = rng.randrange(4)
    if style == 0:
        return "v" + v
    if style == 1:
        return f"{v}-rc.{rng.randint(1, 5)}"
    return v


def iso_date(rng: random.Random) -> str:
    """Return an ISO 8601 calendar date."""
    return f"{rng.randint(1995, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def any_date(rng: random.Random) -> str:
    """Return a date in one of several common formats."""
    y, m, d = rng.randint(1995, 2024), rng.randint(1, 12), rng.randint(1, 28)
    return rng.choice(
        [f"{y}-{m:02d}-{d:02d}", f"{d:02d}.{m:02d}.{y}", f"{m:02d}/{d:02d}/{y}", f"{d}/{m}/{y}"]
    )


def clock_time(rng: random.Random) -> str:
    """Return a time of day such as ``14:35:07`` or ``09:15``."""
    if rng.random() < 0.5:
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}"


def isbn13(rng: random.Random) -> str:
    """Return a hyphenated ISBN-13 with a correct check digit that is *not* Luhn-valid."""
    while True:
        core = "978" + rng.choice("0123") + digits(rng, 8)
        total = sum(int(ch) * (1 if i % 2 == 0 else 3) for i, ch in enumerate(core))
        full = core + str((10 - total % 10) % 10)
        if not luhn_valid(full):
            return f"978-{full[3]}-{full[4:7]}-{full[7:12]}-{full[12]}"


def isbn10(rng: random.Random) -> str:
    """Return a hyphenated ISBN-10 with a correct check character."""
    core = rng.choice(["0", "1", "3"]) + digits(rng, 8)
    total = sum(int(ch) * (10 - i) for i, ch in enumerate(core))
    check = (11 - total % 11) % 11
    c = "X" if check == 10 else str(check)
    return f"{core[0]}-{core[1:4]}-{core[4:9]}-{c}"


def git_hash(rng: random.Random, short: bool = False) -> str:
    """Return a git commit hash (40 hex digits, or 7 when ``short``)."""
    return pick(rng, HEX, 7 if short else 40)


def uuid4(rng: random.Random) -> str:
    """Return a random version-4 UUID string."""
    h = pick(rng, HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def order_number(rng: random.Random) -> str:
    """Return a 16-digit order number that deliberately fails the Luhn check."""
    while True:
        n = rng.choice(["10", "20", "70", "90"]) + digits(rng, 14)
        if not luhn_valid(n):
            return n


def tracking_number(rng: random.Random) -> str:
    """Return a parcel tracking code (letters + digits, not a card or IBAN)."""
    return f"{pick(rng, string.ascii_uppercase, 2)}{digits(rng, 9)}{rng.choice(['DE', 'NL', 'GB', 'FR'])}"
