"""Documents that carry (fake) PII and secrets, and documents full of harmless look-alikes.

PII documents come in several kinds so that every scrubber rule has work to do: prose with a
contact paragraph (e-mail, phone), customer-support mails (card numbers, IBANs), HR forms
(US SSNs), incident reports (IPv4/IPv6), leaked configuration (cloud keys, tokens, PEM blocks,
JWTs, ``api_key = ...`` lines) and bank-transfer notes in several languages. Most of them also
contain look-alikes (versions, dates, times, ISBNs, git hashes, UUIDs, order numbers) that a
good scrubber must leave alone; ``lookalike_doc`` produces documents with *only* look-alikes.
"""

from __future__ import annotations

import random

from pipelines.sample import fakes as fk
from pipelines.sample.compose import compose, fill
from pipelines.sample.sentence_bank import load_bank

CONTACT_LANGS = ["en", "en", "en", "de", "fr", "es", "it", "pt", "nl", "pl", "sv", "ru"]


def lookalike_sentence(rng: random.Random) -> str:
    """One English sentence holding a non-PII identifier that resembles PII."""
    options = [
        lambda: f"The bug was fixed in version {fk.version(rng)}, released on {fk.iso_date(rng)}.",
        lambda: f"See commit {fk.git_hash(rng)} for the full change.",
        lambda: f"Short hash {fk.git_hash(rng, short=True)} reverts the previous attempt.",
        lambda: f"Request id {fk.uuid4(rng)} completed at {fk.clock_time(rng)}.",
        lambda: f"The manual is available in print (ISBN {fk.isbn13(rng)}).",
        lambda: f"An older edition has ISBN {fk.isbn10(rng)}.",
        lambda: f"Your order number is {fk.order_number(rng)}; keep it for your records.",
        lambda: f"Parcel {fk.tracking_number(rng)} left the depot on {fk.any_date(rng)}.",
        lambda: f"The meeting moved from {fk.clock_time(rng)} to {fk.clock_time(rng)} on {fk.any_date(rng)}.",
        lambda: f"Build {rng.randint(2019, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
        f".{rng.randint(1, 9)} passed {rng.randint(100, 4000)} tests in {rng.randint(2, 59)} minutes.",
        lambda: f"Room {rng.randint(100, 450)}, building {rng.choice('ABCDE')}, floor {rng.randint(1, 9)}.",
        lambda: f"Coordinates: {rng.uniform(35, 60):.4f}, {rng.uniform(-9, 30):.4f}.",
        lambda: f"Prices went up by {rng.randint(2, 15)}.{rng.randint(0, 9)}% between "
        f"{rng.randint(2001, 2011)} and {rng.randint(2012, 2023)}.",
    ]
    return rng.choice(options)()


def _contact_prose(rng: random.Random) -> tuple[str, str, list[str]]:
    lang = rng.choice(CONTACT_LANGS)
    bank = load_bank(lang)
    prose = compose(rng, bank, 500, 1500)
    templates = rng.sample(bank.contact, k=rng.randint(1, 2))
    lines = [fill(rng, bank, t) for t in templates]
    kinds = [k for k in ("email", "phone") if any("{" + k + "}" in t for t in templates)]
    joiner = prose.joiner
    contact = joiner.join(lines)
    if rng.random() < 0.5:
        prose.extra.append(contact)
    else:
        prose.paragraphs[rng.randrange(len(prose.paragraphs))].append(("", contact))
    return prose.render(), lang, kinds


def _support_mail(rng: random.Random) -> tuple[str, str, list[str]]:
    first, last = fk.person(rng)
    mail = fk.email(rng, first, last)
    order = fk.order_number(rng)
    card = fk.credit_card(rng)
    iban = fk.iban(rng)
    phone = fk.phone(rng, rng.choice(["US", "GB", "DE", "NL", "FR"]))
    body = rng.choice([
        f"I was charged twice for order {order} on {fk.any_date(rng)}. The card I used is {card} "
        f"(expiry {rng.randint(1, 12):02d}/{rng.randint(25, 30)}). Could you please refund the second "
        f"payment to my account {iban}?",
        f"The payment for order {order} failed although the card {card} works everywhere else. "
        f"Please try again or send the invoice so I can pay by bank transfer from {iban}.",
        f"I would like to cancel my subscription. Please stop charging the card ending in {card[-4:]} and "
        f"confirm the cancellation in writing. The full number on file should be {card}.",
    ])
    text = "\n".join([
        f"From: {first} {last} <{mail}>",
        "To: support@shop.example.net",
        f"Subject: Problem with order {order}",
        f"Date: {fk.any_date(rng)} {fk.clock_time(rng)}",
        "",
        "Hello,",
        body,
        f"You can reach me at {phone} during office hours or simply reply to this e-mail.",
        lookalike_sentence(rng),
        "Best regards,",
        f"{first} {last}",
    ])
    return text, "en", ["email", "card", "iban", "phone"]


def _hr_form(rng: random.Random) -> tuple[str, str, list[str]]:
    first, last = fk.person(rng)
    dob = f"{rng.randint(1960, 2002)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    text = "\n".join([
        "Employee onboarding form",
        f"Full name: {first} {last}",
        f"Date of birth: {dob}",
        f"Social Security Number: {fk.ssn(rng)}",
        f"Phone: {fk.phone(rng, 'US')}",
        f"Email: {fk.email(rng, first, last)}",
        f"Start date: {fk.iso_date(rng)}",
        f"Employee ID: E-{rng.randint(10000, 99999)}",
        f"Notes: laptop asset tag {fk.uuid4(rng)} handed over at {fk.clock_time(rng)}.",
        "Please keep this form in the locked cabinet and do not send it by e-mail.",
    ])
    # Forms usually reach a crawl inside a page of prose (a forum post, a leaked mail thread).
    prose = compose(rng, load_bank("en"), 500, 1200)
    prose.extra.append(text)
    return prose.render(), "en", ["ssn", "phone", "email"]


def _incident(rng: random.Random) -> tuple[str, str, list[str]]:
    a4, b4, a6 = fk.ipv4(rng), fk.ipv4(rng), fk.ipv6(rng)
    who = fk.email(rng)
    text = "\n".join([
        f"Incident report {fk.iso_date(rng)}",
        f"At {fk.clock_time(rng)} UTC the monitoring system detected repeated failed logins from {a4} and "
        f"{a6} against the account {who}.",
        f"The traffic was routed through a proxy at {b4}, which we have now blocked at the firewall.",
        f"We upgraded the gateway to {fk.version(rng)} (commit {fk.git_hash(rng)}) "
        "and rotated the session keys.",
        f"The affected user was informed by phone ({fk.phone(rng)}) and asked to change the password.",
        lookalike_sentence(rng),
        "No customer data was exported according to the current analysis.",
    ])
    return text, "en", ["ipv4", "ipv6", "email", "phone"]


def _secrets(rng: random.Random) -> tuple[str, str, list[str]]:
    lines = [
        rng.choice(["# deployment notes - DO NOT COMMIT", "Quick setup for the staging server:",
                    "Pasting my .env here so you can reproduce the issue:"]),
        f"export AWS_ACCESS_KEY_ID={fk.aws_access_key_id(rng)}",
        f"export AWS_SECRET_ACCESS_KEY={fk.aws_secret_key(rng)}",
        f"GITHUB_TOKEN={fk.github_token(rng)}",
        f"slack_bot_token: {fk.slack_token(rng)}",
        fk.api_key_line(rng),
        f"Authorization: Bearer {fk.jwt(rng)}",
    ]
    middle = lines[1:]
    rng.shuffle(middle)
    lines = lines[:1] + middle
    if rng.random() < 0.6:
        lines.append("The deploy key is below, rotate it after the demo:")
        lines.append(fk.pem_private_key(rng))
    release, day, short = fk.version(rng), fk.iso_date(rng), fk.git_hash(rng, short=True)
    lines.append(f"Tested with release {release} on {day} (commit {short}).")
    prose = compose(rng, load_bank("en"), 500, 1200)
    prose.extra.append("\n".join(lines))
    return prose.render(), "en", ["aws", "github", "slack", "api_key", "jwt"]


BANK_TRANSFER = {
    "de": ("Bitte überweisen Sie den Betrag von {amount} Euro bis zum {date} auf das Konto {iban}. "
           "Kontoinhaber ist {name}. Bei Fragen erreichen Sie uns unter {phone}.", "DE"),
    "fr": ("Merci de virer la somme de {amount} euros avant le {date} sur le compte {iban} au nom de {name}. "
           "Pour toute question, appelez le {phone}.", "FR"),
    "nl": ("Wilt u het bedrag van {amount} euro vóór {date} overmaken naar rekening {iban} ten name van "
           "{name}? Voor vragen kunt u bellen naar {phone}.", "NL"),
    "es": ("Por favor, transfiera la cantidad de {amount} euros antes del {date} a la cuenta {iban} a nombre "
           "de {name}. Si tiene dudas, llame al {phone}.", "ES"),
    "it": ("Si prega di versare l'importo di {amount} euro entro il {date} sul conto {iban} intestato a "
           "{name}. Per informazioni chiamate il {phone}.", "IT"),
    "en": ("Please transfer the amount of {amount} pounds by {date} to the account {iban} in the name of "
           "{name}. If you have any questions, call us on {phone}.", "GB"),
}


def _bank_transfer(rng: random.Random) -> tuple[str, str, list[str]]:
    lang = rng.choice(list(BANK_TRANSFER))
    template, country = BANK_TRANSFER[lang]
    bank = load_bank(lang)
    first, last = fk.person(rng)
    euros, cents = rng.randint(20, 2400), rng.randint(0, 99)
    amount = f"{euros},{cents:02d}" if lang != "en" else str(euros)
    note = template.format(
        amount=amount, date=fk.any_date(rng), iban=fk.iban(rng, country), name=f"{first} {last}",
        phone=fk.phone(rng, country),
    )
    prose = compose(rng, bank, 300, 900)
    prose.extra.append(note)
    return prose.render(), lang, ["iban", "phone"]


PII_KINDS = [
    _contact_prose, _contact_prose, _contact_prose, _support_mail, _hr_form, _incident, _secrets,
    _bank_transfer,
]


def pii_doc(rng: random.Random, index: int) -> tuple[str, str, list[str]]:
    """Return the ``index``-th PII document as ``(text, lang, pii kinds present)``."""
    text, lang, kinds = PII_KINDS[index % len(PII_KINDS)](rng)
    return text, lang, kinds


def lookalike_doc(rng: random.Random) -> tuple[str, str]:
    """An English document with PII look-alikes only (release notes, reading lists, logs)."""
    kind = rng.randrange(3)
    if kind == 0:
        lines = [
            f"Release notes for {fk.version(rng)}",
            f"Released on {fk.iso_date(rng)} at {fk.clock_time(rng)} UTC.",
        ]
        for _ in range(rng.randint(4, 8)):
            lines.append(f"- {lookalike_sentence(rng)}")
    elif kind == 1:
        lines = ["Reading list for the autumn term"]
        for _ in range(rng.randint(4, 8)):
            lines.append(f"{fill(rng, load_bank('en'), rng.choice(load_bank('en').titles))}, "
                         f"{rng.randint(1950, 2023)}. ISBN {fk.isbn13(rng)}.")
    else:
        prose = compose(rng, load_bank("en"), 400, 900)
        prose.extra.extend(lookalike_sentence(rng) for _ in range(rng.randint(3, 6)))
        return prose.render(), "en"
    return "\n".join(lines), "en"
