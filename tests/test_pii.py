"""Unit tests for pipelines.pii: detection per type, look-alikes, checksums, scrubbing."""

from __future__ import annotations

import dataclasses
import random

import pytest

from pipelines.pii import (
    PII_TYPES,
    PLACEHOLDERS,
    PiiConfig,
    PiiSpan,
    find_pii,
    iban_valid,
    luhn_valid,
    scrub_pii,
)

# Credential-shaped fixtures are assembled at runtime so that the literal
# strings never appear in the repository (push-protection / secret scanners
# would rightly complain).  None of them is a real credential.
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"  # AWS documentation example id
GCP_KEY = "AIza" + "SyB0k7Qw2Zr5Tn8Lx3Vc6Hj9Mp1Df4Gs7Ka"
GITHUB_TOKEN = "ghp" + "_" + "wWPw5k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx"
GITHUB_PAT = "github" + "_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTU"
GITLAB_TOKEN = "glpat" + "-" + "hellOworld380_testin"
SLACK_TOKEN = "xox" + "b-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
SLACK_WEBHOOK = "https://hooks.slack.com/" + "services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
STRIPE_KEY = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN " + "RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END " + "RSA PRIVATE KEY-----"
)


def spans_of(text: str, pii_type: str | None = None) -> list[str]:
    return [text[s.start : s.end] for s in find_pii(text) if pii_type is None or s.type == pii_type]


# ---------------------------------------------------------------------------
# API surface
# ---------------------------------------------------------------------------


def test_public_constants() -> None:
    assert PII_TYPES == ("email", "phone", "ip", "credit_card", "ssn", "iban", "secret")
    assert set(PLACEHOLDERS) == set(PII_TYPES)
    assert PLACEHOLDERS["ip"] == "<IP_ADDRESS>" and PLACEHOLDERS["ssn"] == "<US_SSN>"


def test_config_validates_and_freezes() -> None:
    assert PiiConfig().types == PII_TYPES
    assert PiiConfig(types=["email", "ip"]).types == ("email", "ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="passport"):
        PiiConfig(types=("email", "passport"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        PiiConfig().types = ()  # type: ignore[misc]
    with pytest.raises(ValueError):
        find_pii("x", types=("nope",))
    # A bare string is one type, not a sequence of letters.
    assert PiiConfig(types="email").types == ("email",)  # type: ignore[arg-type]


def test_span_is_frozen_value_object() -> None:
    span = PiiSpan("email", 0, 5)
    assert span == PiiSpan("email", 0, 5, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        span.start = 1  # type: ignore[misc]


def test_empty_and_trivial_inputs() -> None:
    assert find_pii("") == []
    assert find_pii("nothing to see here") == []
    assert find_pii("a@b", types=()) == []
    assert scrub_pii("") == ("", dict.fromkeys(PII_TYPES, 0))


# ---------------------------------------------------------------------------
# Positives, per type
# ---------------------------------------------------------------------------

POSITIVES = [
    # email
    ("Contact john.doe@example.com for support", "email", "john.doe@example.com"),
    ("User test.user+tag@sub.domain.co.uk logged in", "email", "test.user+tag@sub.domain.co.uk"),
    ("Email in brackets: <support@company.com>.", "email", "support@company.com"),
    ("mailto:jane_doe99@mail.example.org", "email", "jane_doe99@mail.example.org"),
    ("punycode a@xn--d1acufc.xn--p1ai ok", "email", "a@xn--d1acufc.xn--p1ai"),
    ("Japanese domain: user@会社.jp works", "email", "user@会社.jp"),
    # phone: international and national formats, separators space / dash / dot
    ("Call +44 20 7946 0958 today", "phone", "+44 20 7946 0958"),
    ("Call +1 (555) 123-4567 today", "phone", "+1 (555) 123-4567"),
    ("Call 555-123-4567 today", "phone", "555-123-4567"),
    ("Call (555) 123-4567 today", "phone", "(555) 123-4567"),
    ("Call 555.123.4567 today", "phone", "555.123.4567"),
    ("Call 555 123 4567 today", "phone", "555 123 4567"),
    ("Paris: +33 1 23 45 67 89.", "phone", "+33 1 23 45 67 89"),
    ("Berlin +49 30 1234567", "phone", "+49 30 1234567"),
    ("From abroad dial 0044 20 7946 0958", "phone", "0044 20 7946 0958"),
    ("Mobile +447700900123", "phone", "+447700900123"),
    ("Toll free 1-800-555-1234.", "phone", "1-800-555-1234"),
    ("Office 020 7946 0958", "phone", "020 7946 0958"),
    ("Bureau 01.84.17.61.18", "phone", "01.84.17.61.18"),
    ("Tel. 0487 98 11 92", "phone", "0487 98 11 92"),
    ("Ufficio 06-10446904", "phone", "06-10446904"),
    ("Desk (08) 8747 6301", "phone", "(08) 8747 6301"),
    ("Call (555) 123-4567 ext. 89", "phone", "(555) 123-4567 ext. 89"),
    ("+1-054-353-1726x16954", "phone", "+1-054-353-1726x16954"),
    ("Phone: 329 7730", "phone", "329 7730"),
    # phone: a number right after it (opening hours, counts) is not a table of numbers
    ("Call (800) 555-0199 24 hours a day", "phone", "(800) 555-0199"),
    ("Order at 800-555-0199 7 days a week", "phone", "800-555-0199"),
    ("Call 800 555 0199 24 hours a day", "phone", "800 555 0199"),
    ("Reach us on 800 555 0199 9am to 5pm", "phone", "800 555 0199"),
    ("Can someone call me on 9472 7916?", "phone", "9472 7916"),
    # phone: German layouts (DIN 5008), next to a phone word
    ("Tel. 030/1234567", "phone", "030/1234567"),
    ("Tel: (030) 1234567", "phone", "(030) 1234567"),
    ("Tel.: 030 / 123 456 78", "phone", "030 / 123 456 78"),
    ("Tel: 030-123456-0", "phone", "030-123456-0"),
    ("Fax: (0 30) 12 34 56", "phone", "(0 30) 12 34 56"),
    ("Tel. +49 89 / 123 456", "phone", "+49 89 / 123 456"),
    ("Telefon: 089 / 12 34 56-0 (Zentrale)", "phone", "089 / 12 34 56-0"),
    # ip
    ("Server at 192.168.0.1 is down", "ip", "192.168.0.1"),
    ("route 10.0.0.0/8 via gw", "ip", "10.0.0.0/8"),
    ("IP: 192.168.1.1.", "ip", "192.168.1.1"),
    ("listen on 8.8.8.8:53", "ip", "8.8.8.8"),
    ("v6 2001:db8::8a2e:370:7334 up", "ip", "2001:db8::8a2e:370:7334"),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("link-local fe80::1%eth0", "ip", "fe80::1%eth0"),
    ("mapped ::ffff:192.0.2.1", "ip", "::ffff:192.0.2.1"),
    ("Connect to [2001:db8::1]:8080", "ip", "2001:db8::1"),
    ("prefix 2001:db8::/32.", "ip", "2001:db8::/32"),
    # credit cards (Luhn-valid test numbers)
    ("card 4111 1111 1111 1111 expires", "credit_card", "4111 1111 1111 1111"),
    ("card 4111-1111-1111-1111 expires", "credit_card", "4111-1111-1111-1111"),
    ("Payment with card 4532015112830366 was processed", "credit_card", "4532015112830366"),
    ("Amex 378282246310005", "credit_card", "378282246310005"),
    ("AmEx card 3782 822463 10005 for business", "credit_card", "3782 822463 10005"),
    ("Mastercard: 5555555555554444", "credit_card", "5555555555554444"),
    ("Discover 6011111111111117", "credit_card", "6011111111111117"),
    ("Diners 30569309025904", "credit_card", "30569309025904"),
    ("Mixed format 5555.5555.5555.4444 should be detected", "credit_card", "5555.5555.5555.4444"),
    ("What is the limit for card 501864667909?", "credit_card", "501864667909"),  # 12-digit Maestro
    # ssn
    ("His SSN is 123-45-6789.", "ssn", "123-45-6789"),
    ("ssn 078.05.1123", "ssn", "078.05.1123"),
    ("Social security number: 078 05 1123", "ssn", "078 05 1123"),
    # nine digits in a row, only next to an SSN word; 078-05-1120 (the Woolworth wallet sample) is
    # treated like any other issued number in every form
    ("SSN: 123456789", "ssn", "123456789"),
    ("social security no. 078051120", "ssn", "078051120"),
    ("SSN 078-05-1120", "ssn", "078-05-1120"),
    # iban
    ("Pay to GB82 WEST 1234 5698 7654 32 please", "iban", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "iban", "DE89 3704 0044 0532 0130 00"),
    ("FR14 2004 1010 0505 0001 3M02 606", "iban", "FR14 2004 1010 0505 0001 3M02 606"),
    ("compact GB82WEST12345698765432", "iban", "GB82WEST12345698765432"),
    ("lower gb82west12345698765432", "iban", "gb82west12345698765432"),
    ("NL91ABNA0417164300", "iban", "NL91ABNA0417164300"),
    ("dashed AL47-2121-1009-0000-0002-3569-8741", "iban", "AL47-2121-1009-0000-0002-3569-8741"),
    ("this is an iban VG96 VPVG 0000 0123 4567 8901 X in a sentence", "iban", "VG96 VPVG 0000 0123 4567 8901"),
]


@pytest.mark.parametrize(("text", "pii_type", "expected"), POSITIVES)
def test_positive(text: str, pii_type: str, expected: str) -> None:
    assert spans_of(text, pii_type) == [expected], find_pii(text)


SECRET_POSITIVES = [
    (f"aws_access_key_id={AWS_KEY_ID}", AWS_KEY_ID, "aws_access_key"),
    (f"maps key {GCP_KEY} here", GCP_KEY, "gcp_api_key"),
    (f"token {GITHUB_TOKEN}", GITHUB_TOKEN, "github_token"),
    (f"pat {GITHUB_PAT} end", GITHUB_PAT, "github_token"),
    (f"gitlab {GITLAB_TOKEN}", GITLAB_TOKEN, "gitlab_token"),
    (f"slack {SLACK_TOKEN}", SLACK_TOKEN, "slack_token"),
    (f"hook {SLACK_WEBHOOK}", SLACK_WEBHOOK, "slack_webhook"),
    (f"stripe {STRIPE_KEY}", STRIPE_KEY, "stripe_key"),
    (f"Authorization: Bearer {JWT}", JWT, "jwt"),
    (f"key file:\n{PEM}\nthanks", PEM, "private_key"),
    ('api_key = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"', "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "assignment"),
    ('password: "hunter2hunter2"', "hunter2hunter2", "assignment"),
    ("secret_token = 'Zx9$kQ2!mP7wLr'", "Zx9$kQ2!mP7wLr", "assignment"),
    ("export AUTH_TOKEN=abcDEF123456xyz", "abcDEF123456xyz", "assignment"),
    ('{"client_secret": "c3VwZXJzZWNyZXQxMjM0NTY3ODk="}', "c3VwZXJzZWNyZXQxMjM0NTY3ODk=", "assignment"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "assignment",
    ),
    ("DB_PASSWORD=S3cure!Passw0rd", "S3cure!Passw0rd", "assignment"),
    ("mysql --password=Tr0ub4dor3xyz -u root", "Tr0ub4dor3xyz", "assignment"),
    ("postgres://admin:s3cr3tPa55@db.internal:5432/app", "s3cr3tPa55", "url_password"),
]


@pytest.mark.parametrize(("text", "expected", "subtype"), SECRET_POSITIVES)
def test_secret_positive(text: str, expected: str, subtype: str) -> None:
    spans = [s for s in find_pii(text) if s.type == "secret"]
    assert [text[s.start : s.end] for s in spans] == [expected]
    assert spans[0].subtype == subtype


def test_secret_assignment_keeps_key_name() -> None:
    text = 'api_key = "9f8e7d6c5b4a39281706f5e4d3c2b1a0"\npassword: hunter2hunter2\nAUTH_TOKEN=abcDEF123456xyz'
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == 'api_key = "<SECRET>"\npassword: <SECRET>\nAUTH_TOKEN=<SECRET>'
    assert counts["secret"] == 3


def test_truncated_private_key_is_still_scrubbed() -> None:
    head = "-----BEGIN " + "PRIVATE KEY-----"
    text = f"oops\n{head}\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n"
    scrubbed, _ = scrub_pii(text)
    assert scrubbed == "oops\n<SECRET>\n"


def test_private_key_with_json_escaped_newlines() -> None:
    body = PEM.replace("\n", "\\n")
    text = '{"private_key": "' + body + '\\n", "client_email": "svc@proj.iam.gserviceaccount.com"}'
    scrubbed, counts = scrub_pii(text)
    assert "MIIE" not in scrubbed and counts["secret"] == 1 and counts["email"] == 1


# ---------------------------------------------------------------------------
# Look-alikes that must not be flagged
# ---------------------------------------------------------------------------

NEGATIVES = [
    # versions
    "Released version 1.2.3 today.",
    "Upgrade to v2.10.4.1 now.",
    "version 1.2.3.4 is out",
    "Download v1.2.3.4 here",
    "Windows Version: 10.0.19041.1",
    "Chrome/120.0.6099.109 Safari/537.36",
    "see Section 3.2.1.4 for details",
    "emulator 1.3.3.9 + BIOS",
    # dates and times
    "Posted on 2024-01-15.",
    "Due 15/01/2024 at noon",
    "Datum: 01.02.2024",
    "Jan 15, 2024",
    "2024-01-15T12:30:45Z",
    "meet at 12:30:45 or 12:30",
    "the war of 1914-1918",
    # ISBNs
    "ISBN 978-3-16-148410-0",
    "ISBN 0-306-40615-2",
    "978-3-16-148410-0",
    # hashes and ids
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "md5 d41d8cd98f00b204e9800998ecf8427e",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "Request ID: 550e8400-e29b-41d4-a716-446655440000",
    # numbers failing checksums or not shaped like PII
    "card 4111111111111112 is invalid",
    "number 1234567890123456",
    "GB82 WEST 1234 5698 7654 33",
    "DE89370400440532013001",
    "order number 123456789012",
    "a population of 1,234,567 people",
    "1 234 567 inhabitants",
    # space-grouped numbers in a run of numbers: a table row, not a phone number
    "1.001 159 652 1859 0.000 000",
    "totals 415 555 0132 7 and 12 415 555 0132",
    "pp. 1234-1256",
    "Boston, MA 02110-1301 USA",
    "Call 911",
    "final score 3-1",
    "(2019) 123-145",
    "timestamp 1700000000000 ms",
    "rng = np.random.default_rng(5292808890472453840)",
    "x = 4111111111111111 * 2",
    # invalid SSNs
    "999-99-9999",
    "000-12-3456",
    "666-12-3456",
    "123-00-4567",
    "123-45-0000",
    "suite 680 36 4022",
    # nine digits: no SSN word, never issued, or not nine
    "order 123456789",
    "078051120",
    "SSN: 987654321",
    "SSN: 000123456",
    "SSN 666123456",
    "SSN: 123004567",
    "SSN: 123450000",
    "SSN: 1234567890",
    "SSN 12345678",
    "Not a TIN 123456789",  # other countries' taxpayer numbers have nine digits too
    # slashes and brackets that are not phone numbers, even next to a phone word
    "Due 12/05/2024, call then",
    "Tel. 12/05/2024",
    "Fax: 2024/05/12",
    "Tel. 01/05/2024",
    "fax 030/12/2024",
    "call 3/4 of them, 1/2 of the rest",
    "phone firmware 1.2.3/4.5.6",
    "Tel. ISBN 0-306-40615-2",
    "call between 09:00/17:30",
    "Tel. 0,14 €/Min., Fax 0,09 €/Min.",
    "phone book pp. 123-456, 1023/1045",
    "Fig. 030/12",
    "Tel. 030/12",
    "Az. 030/1234567",
    # IPv6 look-alikes
    "12:30:45",
    "std::vector<int> v;",
    "foo :: Int -> Int",
    "b = a[::2]",
    "c = a[10::20]",
    "MAC aa:bb:cc:dd:ee:ff",
    "MyClass::toString()",
    "ratio 1:2:3:4",
    "Port 80:443",
    # IPv4 look-alikes
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "IP192.168.1.1text",
    # secrets look-alikes
    'password = "changeme"',
    'api_key = "<YOUR_API_KEY>"',
    "token: ${GITHUB_TOKEN}",
    "password: xxxxxxxxxx",
    "password = get_password(user)",
    "token = Keyword.Type",
    "secret: Understanding",
    "The key to success is patience.",
    "token_count = 12345678",
    'eos_token = "</s>"',
    "max_tokens=4096",
    'cache_key = "user:1234:profile"',
    "sk_live_",
    "eyJhbGciOiJIUzI1NiJ9 (missing payload and signature)",
    "https://example.com/page?q=1",
    "git@github.com:org/repo.git",
    "The secretary said: Monday1234 works.",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_negative(text: str) -> None:
    assert find_pii(text) == [], [(s, text[s.start : s.end]) for s in find_pii(text)]


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    ["4111111111111111", "79927398713", "4012 8888 8888 1881", "378282246310005", "4012-8888-8888-1881", "0" * 2],
)
def test_luhn_valid(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number", ["4111111111111112", "79927398710", "", "1", "abcd", "4111.1111.1111.1111", "١٢٣٤٥٦٧٨٩٠"]
)
def test_luhn_invalid(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "DE89 3704 0044 0532 0130 00",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "CH9300762011623852957",
        "NO9386011117947",
        "gb82west12345698765432",
        "AL47-2121-1009-0000-0002-3569-8741",
    ],
)
def test_iban_valid(iban: str) -> None:
    assert iban_valid(iban)


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 33",  # check digits
        "GB83 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 01",
        "DE89 3704 0044 0532 0130 0",  # length
        "XX82WEST12345698765432",  # unknown country
        "GB82wEST12345698765432",  # mixed case
        "GB82/WEST/1234/5698/7654/32",  # separator
        "",
        "GB",
    ],
)
def test_iban_invalid(iban: str) -> None:
    assert not iban_valid(iban)


# ---------------------------------------------------------------------------
# Scrubbing, counts, overlaps
# ---------------------------------------------------------------------------


def test_scrub_replaces_each_type_and_counts_all_types() -> None:
    text = (
        "Mail john@example.com, call +44 20 7946 0958, host 10.1.2.3, "
        "card 4111 1111 1111 1111, ssn 123-45-6789, iban GB82 WEST 1234 5698 7654 32, "
        f"key {AWS_KEY_ID}."
    )
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == (
        "Mail <EMAIL>, call <PHONE>, host <IP_ADDRESS>, card <CREDIT_CARD>, ssn <US_SSN>, iban <IBAN>, key <SECRET>."
    )
    assert counts == dict.fromkeys(PII_TYPES, 1)


def test_scrub_counts_zero_when_clean() -> None:
    text = "A perfectly ordinary sentence."
    assert scrub_pii(text) == (text, dict.fromkeys(PII_TYPES, 0))


def test_scrub_respects_config_subset() -> None:
    text = "john@example.com or 555-123-4567"
    scrubbed, counts = scrub_pii(text, PiiConfig(types=("email",)))
    assert scrubbed == "<EMAIL> or 555-123-4567"
    assert counts == {**dict.fromkeys(PII_TYPES, 0), "email": 1}


def test_repeated_values_are_counted_separately() -> None:
    scrubbed, counts = scrub_pii("a@b.io and a@b.io and a@b.io")
    assert scrubbed == "<EMAIL> and <EMAIL> and <EMAIL>" and counts["email"] == 3


def test_email_beats_embedded_ip() -> None:
    text = "Check logs at user@192.168.1.100 for details"
    assert [(s.type, text[s.start : s.end]) for s in find_pii(text)] == [("email", "user@192.168.1.100")]


def test_card_is_not_reported_as_phone_even_when_only_phones_requested() -> None:
    text = "card 4111 1111 1111 1111"
    assert find_pii(text, types=("phone",)) == []
    assert [s.type for s in find_pii(text)] == ["credit_card"]


def test_secret_beats_everything_it_overlaps() -> None:
    text = f'token = "{JWT}"'
    spans = find_pii(text)
    assert len(spans) == 1 and spans[0].type == "secret"


def test_iban_beats_phone_and_ssn_shapes() -> None:
    text = "IBAN: DE89 3704 0044 0532 0130 00"
    assert [s.type for s in find_pii(text)] == ["iban"]


def test_spans_are_sorted_and_disjoint() -> None:
    text = " ".join(t for t, _, _ in POSITIVES) + " " + " ".join(t for t, _, _ in SECRET_POSITIVES)
    spans = find_pii(text)
    assert len(spans) >= len(POSITIVES)
    for a, b in zip(spans, spans[1:], strict=False):
        assert a.end <= b.start
    assert all(0 <= s.start < s.end <= len(text) for s in spans)


def test_types_filter_only_returns_requested_types() -> None:
    text = "john@example.com 555-123-4567 10.0.0.1"
    assert {s.type for s in find_pii(text, types=("ip",))} == {"ip"}
    assert {s.type for s in find_pii(text, types=["email", "phone"])} == {"email", "phone"}


# ---------------------------------------------------------------------------
# Property-style: clean text is untouched, scrubbing is idempotent
# ---------------------------------------------------------------------------

TRICKY_CLEAN = NEGATIVES + [
    "In 1492 Columbus sailed; by 1776 the colonies had 2.5 million people.",
    "The meeting is on 3/4 at 10:30am in room 1204-B.",
    "Pi is roughly 3.14159265358979 and e is 2.718281828459.",
    "Use `git rebase -i HEAD~3` then `git push --force-with-lease`.",
    "Order #A-1234-XYZ shipped via UPS 1Z999AA10123456784? No - tracking pending.",
    "for (int i = 0; i < n; ++i) { total += a[i] * 2; }",
    "SELECT * FROM users WHERE id = 42 AND created_at > '2024-01-01';",
    "She scored 98.6% on 12/12 tests; the curve was 0.25 sigma.",
    "Chapter 12, verses 1-20, pages 345-367.",
    "CSS: color: #ff00aa; margin: 0 auto; z-index: 1000;",
    "Coordinates 48.8566, 2.3522 mark Paris.",
    "The password field must be at least 8 characters long.",
    "Set your API key in the settings page.",
    "Tokens: 1,024 in, 2,048 out.",
    "温度は25度です。電話してください。",
    "Ցանկացած անձ ունի իրավունք 1948 թվականին",
]


@pytest.mark.parametrize("text", TRICKY_CLEAN)
def test_clean_text_is_unchanged(text: str) -> None:
    assert scrub_pii(text) == (text, dict.fromkeys(PII_TYPES, 0))


PII_SNIPPETS = [t for t, _, _ in POSITIVES] + [t for t, _, _ in SECRET_POSITIVES]


@pytest.mark.parametrize("seed", range(40))
def test_scrub_is_idempotent(seed: int) -> None:
    rng = random.Random(seed)
    parts = rng.sample(PII_SNIPPETS, 4) + rng.sample(TRICKY_CLEAN, 3)
    rng.shuffle(parts)
    text = rng.choice([" ", "\n", ". ", ", "]).join(parts)
    once, first_counts = scrub_pii(text)
    twice, second_counts = scrub_pii(once)
    assert twice == once
    assert second_counts == dict.fromkeys(PII_TYPES, 0)
    assert sum(first_counts.values()) >= 1


@pytest.mark.parametrize(("text", "pii_type", "expected"), POSITIVES)
def test_each_positive_scrubs_to_its_placeholder(text: str, pii_type: str, expected: str) -> None:
    scrubbed, counts = scrub_pii(text)
    assert scrubbed == text.replace(expected, PLACEHOLDERS[pii_type], 1)
    assert counts[pii_type] == 1
