"""Generators for the noisy parts of the sample corpus.

Boilerplate and spam pages, tiny fragments, code and logs, gibberish and mixed-language
text, and a few deliberately awkward records (emoji, combining marks, bidi controls, a very
long single line, Windows and old-Mac line endings, empty text). Each function takes a
:class:`random.Random` and returns a ``(text, lang)`` pair; ``lang`` is the intended label.
"""

from __future__ import annotations

import random
import string
import unicodedata

from pipelines.sample import fakes
from pipelines.sample.compose import compose, fill
from pipelines.sample.sentence_bank import load_bank, load_sections

# --------------------------------------------------------------------------- boilerplate

NAV: dict[str, list[str]] = {
    "en": ["Home", "About us", "Services", "Blog", "Shop", "Contact", "FAQ", "Login", "Register"],
    "de": ["Startseite", "Über uns", "Leistungen", "Blog", "Shop", "Kontakt", "Impressum", "Anmelden"],
    "fr": ["Accueil", "Qui sommes-nous", "Services", "Blog", "Boutique", "Contact", "Connexion"],
    "es": ["Inicio", "Quiénes somos", "Servicios", "Blog", "Tienda", "Contacto", "Iniciar sesión"],
}
COOKIE: dict[str, list[str]] = {
    "en": [
        "We use cookies to give you the best possible experience on our website.",
        "By continuing to browse this site, you agree to our use of cookies.",
        "Accept all cookies", "Reject non-essential cookies", "Manage preferences", "Cookie Policy",
    ],
    "de": [
        "Wir verwenden Cookies, um Ihnen das beste Nutzererlebnis auf unserer Website zu bieten.",
        "Wenn Sie die Seite weiter nutzen, stimmen Sie der Verwendung von Cookies zu.",
        "Alle akzeptieren", "Nur notwendige Cookies", "Einstellungen", "Datenschutzerklärung",
    ],
    "fr": [
        "Nous utilisons des cookies pour vous offrir la meilleure expérience sur notre site.",
        "En poursuivant votre navigation, vous acceptez l'utilisation des cookies.",
        "Tout accepter", "Tout refuser", "Personnaliser", "Politique de cookies",
    ],
    "es": [
        "Utilizamos cookies para ofrecerle la mejor experiencia en nuestro sitio web.",
        "Si continúa navegando, acepta el uso de cookies.",
        "Aceptar todas", "Rechazar", "Configurar", "Política de cookies",
    ],
}
FOOTER: dict[str, list[str]] = {
    "en": ["Privacy Policy | Terms of Use | Cookie Policy | Sitemap", "© {year} {site}. All rights reserved.",
           "Follow us on Facebook", "Follow us on Instagram", "Subscribe to our newsletter"],
    "de": ["Impressum | Datenschutz | AGB | Sitemap", "© {year} {site}. Alle Rechte vorbehalten.",
           "Folgen Sie uns auf Facebook", "Newsletter abonnieren"],
    "fr": ["Mentions légales | Confidentialité | CGV | Plan du site",
           "© {year} {site}. Tous droits réservés.", "Suivez-nous sur Facebook",
           "Inscrivez-vous à la newsletter"],
    "es": ["Aviso legal | Privacidad | Cookies | Mapa del sitio",
           "© {year} {site}. Todos los derechos reservados.", "Síguenos en Facebook",
           "Suscríbete a nuestro boletín"],
}
JS_NOTICE: dict[str, list[str]] = {
    "en": [
        "Please enable JavaScript to view this page.",
        "You need to enable JavaScript to run this app.",
        "JavaScript is disabled in your browser. Please enable JavaScript or switch to a supported browser.",
        "Please enable JavaScript to view the comments powered by Disqus.",
        "This site works best with JavaScript enabled.",
    ],
    "de": ["Bitte aktivieren Sie JavaScript, um diese Seite anzuzeigen.",
           "JavaScript ist in Ihrem Browser deaktiviert."],
    "fr": ["Veuillez activer JavaScript pour afficher cette page.",
           "JavaScript est désactivé dans votre navigateur."],
    "es": ["Por favor, active JavaScript para ver esta página.",
           "JavaScript está desactivado en su navegador."],
}
SITES = [
    "Northwind Living", "BrightHome", "Casa Bella", "Gartenwelt24", "Maison Claire", "TopDeals", "CityGuide",
]
PRODUCTS = [
    "watches", "sneakers", "phone cases", "vitamins", "sunglasses", "casino bonus", "diet pills",
    "car insurance", "flights", "web hosting", "designer handbags", "crypto signals",
]
SPAM_DOMAINS = ["best-deals.example", "cheap-offers.test", "topsale.example.net", "win-big.test"]
KEYWORDS = [
    ["cheap flights", "london", "best deals", "cheap flights london", "book online", "last minute"],
    ["plumber manchester", "emergency plumber", "24/7", "cheap plumber", "local plumber", "boiler repair"],
    ["günstige ferienwohnung", "ostsee", "urlaub buchen", "ferienwohnung ostsee", "strand", "angebot"],
    ["seo agency", "google ranking", "backlinks", "more traffic", "seo", "online marketing"],
    ["wedding dresses", "cheap wedding dresses", "bridal gowns", "sale", "buy online", "plus size"],
    ["hôtel pas cher", "paris", "réservation", "hôtel paris pas cher", "chambre", "promo"],
]
LOREM = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip "
    "ex ea commodo consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla "
    "pariatur excepteur sint occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim "
    "id est laborum"
).split()
BULLET_ITEMS = [
    "Free Wi-Fi", "24/7 customer support", "Free shipping over $50", "30-day money-back guarantee",
    "Secure checkout", "Gift wrapping available", "New arrivals", "Best sellers", "Size guide",
    "Track your order", "Returns and exchanges", "Student discount", "Store locator", "Careers",
    "Press", "Affiliate program", "Accessibility", "Gift cards", "Payment options", "Loyalty club",
    "Parking on site", "Pets allowed", "Breakfast included", "Air conditioning", "Airport shuttle",
]
BULLETS = ["•", "-", "*", "·", "▪", "✓", "»"]


def _site(rng: random.Random) -> str:
    return rng.choice(SITES)


def _real_sentences(rng: random.Random, lang: str, k: int) -> list[str]:
    bank = load_bank(lang)
    return [fill(rng, bank, t) for t in rng.sample(bank.sentences, k)]


def cookie_nav_page(rng: random.Random) -> tuple[str, str]:
    """A page whose few real sentences are buried in navigation and cookie-banner lines."""
    lang = rng.choice(["en", "en", "de", "fr", "es"])
    nav, cookie = NAV[lang], COOKIE[lang]
    site, year = _site(rng), rng.randint(2012, 2024)
    lines: list[str] = list(nav) if rng.random() < 0.5 else [" | ".join(nav)]
    lines += cookie[: rng.randint(2, len(cookie))]
    lines += _real_sentences(rng, lang, rng.randint(1, 3))
    lines += [f.format(year=year, site=site) for f in FOOTER[lang]]
    lines += list(nav) + cookie[:2]
    return "\n".join(lines), lang


def link_farm(rng: random.Random) -> tuple[str, str]:
    """A 'click here / buy now' link-farm page."""
    patterns = [
        "Click here to get cheap {p} today!", "BUY NOW - {p} at the lowest price!!!",
        "Best {p} deals >>> click here", "Free shipping on all {p} - buy now",
        "Limited offer: {pct}% off {p}",
        "Top 10 {p} of {year} - click here", "https://{dom}/{slug}?ref={n}", "{P} {P} {P} - BUY NOW",
        "Don't miss out!!! Order your {p} now", "Click here >>> https://{dom}/{slug}",
    ]
    lines = []
    for _ in range(rng.randint(12, 30)):
        p = rng.choice(PRODUCTS)
        lines.append(
            rng.choice(patterns).format(
                p=p, P=p.upper(), pct=rng.randint(2, 9) * 10, year=rng.randint(2015, 2024),
                dom=rng.choice(SPAM_DOMAINS), slug=p.replace(" ", "-"), n=rng.randint(100, 99999),
            )
        )
    return "\n".join(lines), "en"


def keyword_stuffing(rng: random.Random) -> tuple[str, str]:
    """Keyword-stuffed SEO text."""
    kw = rng.choice(KEYWORDS)
    lang = "de" if "ostsee" in kw else "fr" if "paris" in kw else "en"
    lines = []
    for _ in range(rng.randint(2, 5)):
        phrases = [rng.choice(kw) for _ in range(rng.randint(15, 35))]
        lines.append(" ".join(phrases) + rng.choice(["", ".", " !!!", " - best price"]))
    return "\n".join(lines), lang


def lorem_ipsum(rng: random.Random) -> tuple[str, str]:
    """Placeholder lorem-ipsum page, sometimes with a real headline."""
    paras = []
    for i in range(rng.randint(2, 6)):
        sentences = []
        for j in range(rng.randint(3, 7)):
            if i == 0 and j == 0:
                sentences.append("Lorem ipsum dolor sit amet, consectetur adipiscing elit.")
                continue
            words = [rng.choice(LOREM) for _ in range(rng.randint(6, 16))]
            sentences.append(" ".join(words).capitalize() + ".")
        paras.append(" ".join(sentences))
    if rng.random() < 0.5:
        paras.insert(0, fill(rng, load_bank("en"), rng.choice(load_bank("en").titles)))
    return "\n".join(paras), "la"


def javascript_notice(rng: random.Random) -> tuple[str, str]:
    """An 'enable JavaScript' shell page."""
    lang = rng.choice(["en", "en", "en", "de", "fr", "es"])
    lines = [rng.choice(NAV[lang]) for _ in range(rng.randint(0, 4))]
    lines += rng.sample(JS_NOTICE[lang], k=min(len(JS_NOTICE[lang]), rng.randint(1, 3)))
    lines += ["Loading..."] * rng.randint(0, 2)
    lines.append(FOOTER[lang][1].format(year=rng.randint(2012, 2024), site=_site(rng)))
    return "\n".join(lines), lang


def bullet_page(rng: random.Random) -> tuple[str, str]:
    """A page that is almost entirely a bullet list."""
    mark = rng.choice(BULLETS)
    items = rng.sample(BULLET_ITEMS, k=rng.randint(10, 20))
    head = rng.choice(["Our services", "Quick links", "Amenities", "Customer service", "Categories"])
    return "\n".join([head] + [f"{mark} {it}" for it in items]), "en"


def ellipsis_page(rng: random.Random) -> tuple[str, str]:
    """A teaser/listing page where most lines are truncated with an ellipsis."""
    lang = rng.choice(["en", "de", "fr", "es", "it"])
    bank = load_bank(lang)
    lines = []
    for t in rng.sample(bank.sentences, k=rng.randint(8, 16)):
        words = fill(rng, bank, t).split()
        cut = max(3, int(len(words) * rng.uniform(0.4, 0.7)))
        lines.append(" ".join(words[:cut]).rstrip(",;:") + rng.choice(["...", "…", " ..."]))
        if rng.random() < 0.3:
            lines.append({"en": "Read more", "de": "Weiterlesen", "fr": "Lire la suite",
                          "es": "Leer más", "it": "Continua a leggere"}[lang])
    return "\n".join(lines), lang


BOILERPLATE_KINDS = [
    cookie_nav_page, link_farm, keyword_stuffing, lorem_ipsum, javascript_notice, bullet_page, ellipsis_page,
]


def boilerplate(rng: random.Random, index: int) -> tuple[str, str]:
    """Return the ``index``-th boilerplate page (kinds are cycled so all appear)."""
    return BOILERPLATE_KINDS[index % len(BOILERPLATE_KINDS)](rng)


# --------------------------------------------------------------------------- tiny documents

TINY: list[tuple[str, str]] = [
    ("Thanks!", "en"), ("Page 2 of 7", "en"), ("Loading...", "en"), ("Home", "en"), ("404 Not Found", "en"),
    ("Posted by admin", "en"), ("Comments are closed.", "en"), ("Read more", "en"), ("Subscribe", "en"),
    ("Great post, thanks for sharing!", "en"), ("No results found.", "en"), ("Sold out", "en"),
    ("Seite nicht gefunden.", "de"), ("Keine Kommentare.", "de"), ("Vielen Dank!", "de"),
    ("Merci beaucoup !", "fr"), ("Aucun commentaire.", "fr"), ("Lire la suite", "fr"),
    ("Gracias por tu comentario.", "es"), ("Página no encontrada", "es"), ("Grazie mille!", "it"),
    ("Obrigado!", "pt"), ("Dank je wel!", "nl"), ("Спасибо!", "ru"), ("Страница не найдена", "ru"),
    ("続きを読む", "ja"), ("ありがとうございます。", "ja"), ("点击这里", "zh"), ("谢谢！", "zh"),
    ("Dziękuję!", "pl"), ("Tack så mycket!", "sv"), ("Teşekkürler", "tr"), ("감사합니다", "ko"),
    ("شكرا جزيلا", "ar"), ("ขอบคุณครับ", "th"), ("OK", "und"), ("...", "und"), ("1", "und"), ("???", "und"),
]


def tiny(rng: random.Random) -> tuple[str, str]:
    """A very short document: a UI string, a caption or a one-line comment."""
    if rng.random() < 0.7:
        return rng.choice(TINY)
    first, last = fakes.person(rng)
    return rng.choice([
        (f"Photo: {first} {last}", "en"),
        (f"Posted {rng.randint(2, 11)} hours ago", "en"),
        (f"{rng.randint(2, 99)} comments", "en"),
        (f"Foto: {first} {last}", "de"),
        (f"Tags: {rng.choice(PRODUCTS)}, {rng.choice(PRODUCTS)}", "en"),
    ])


# --------------------------------------------------------------------------- code, configs, logs

IDENTS = [
    "user", "order", "item", "price", "total", "count", "config", "result", "payload", "record", "batch",
]
VERBS = ["load", "parse", "compute", "fetch", "update", "validate", "merge", "render", "export", "normalize"]
UAS = ["Mozilla/5.0 (X11; Linux x86_64)", "curl/8.4.0", "Googlebot/2.1", "python-requests/2.31.0"]


def _python(rng: random.Random) -> str:
    v, a, b = rng.choice(VERBS), rng.choice(IDENTS), rng.choice(IDENTS)
    n = rng.randint(2, 50)
    return f'''import json
from pathlib import Path


def {v}_{a}s(path: Path, limit: int = {n}) -> list[dict]:
    """{v.capitalize()} {a} records from a JSON lines file."""
    {b}s = []
    with path.open() as fh:
        for i, line in enumerate(fh):
            if i >= limit:
                break
            {b} = json.loads(line)
            if {b}.get("{a}_id") is None:
                continue
            {b}s.append({b})
    return {b}s


if __name__ == "__main__":
    print(len({v}_{a}s(Path("data/{a}s.jsonl"))))'''


def _javascript(rng: random.Random) -> str:
    v, a = rng.choice(VERBS), rng.choice(IDENTS)
    return f"""const API_URL = "/api/v{rng.randint(1, 3)}/{a}s";

async function {v}{a.capitalize()}s(page = 1) {{
  const res = await fetch(`${{API_URL}}?page=${{page}}&size={rng.choice([10, 20, 50])}`);
  if (!res.ok) {{
    throw new Error(`request failed: ${{res.status}}`);
  }}
  const data = await res.json();
  return data.items.filter((x) => x.{a}Id !== null);
}}

document.addEventListener("DOMContentLoaded", () => {{
  {v}{a.capitalize()}s().then((items) => console.log(items.length));
}});"""


def _yaml(rng: random.Random) -> str:
    return f"""# service configuration
service:
  name: {rng.choice(IDENTS)}-api
  port: {rng.choice([8080, 8000, 3000, 5000])}
  workers: {rng.randint(2, 16)}
database:
  host: db.internal
  port: 5432
  pool_size: {rng.randint(5, 40)}
logging:
  level: {rng.choice(["INFO", "DEBUG", "WARNING"])}
  format: json
features:
  - {rng.choice(VERBS)}
  - {rng.choice(VERBS)}
  - cache"""


def _access_log(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(8, 20)):
        ts = f"{rng.randint(10, 28)}/Mar/2024:{fakes.clock_time(rng)[:5]}:{rng.randint(10, 59)} +0000"
        path = f"/{rng.choice(IDENTS)}s/{rng.randint(1, 9999)}"
        status = rng.choice([200, 200, 200, 301, 304, 404, 500])
        lines.append(
            f'{fakes.ipv4(rng)} - - [{ts}] "GET {path} HTTP/1.1" {status} {rng.randint(200, 90000)} '
            f'"-" "{rng.choice(UAS)}"'
        )
    return "\n".join(lines)


def _json_blob(rng: random.Random) -> str:
    items = ",\n".join(
        f'    {{"id": {rng.randint(1, 9999)}, "{rng.choice(IDENTS)}": "{rng.choice(VERBS)}", '
        f'"active": {rng.choice(["true", "false"])}, "score": {rng.random():.3f}}}'
        for _ in range(rng.randint(3, 8))
    )
    return f'{{\n  "version": "{fakes.version(rng)}",\n  "items": [\n{items}\n  ]\n}}'


def _sql(rng: random.Random) -> str:
    a, b = rng.choice(IDENTS), rng.choice(IDENTS)
    return f"""CREATE TABLE {a}s (
    id SERIAL PRIMARY KEY,
    {b}_id INTEGER NOT NULL,
    created_at TIMESTAMP DEFAULT now(),
    amount NUMERIC(10, 2)
);

SELECT {b}_id, COUNT(*) AS n, SUM(amount) AS total
FROM {a}s
WHERE created_at >= '{fakes.iso_date(rng)}'
GROUP BY {b}_id
HAVING COUNT(*) > {rng.randint(1, 20)}
ORDER BY total DESC
LIMIT {rng.choice([10, 50, 100])};"""


def _traceback(rng: random.Random) -> str:
    v, a = rng.choice(VERBS), rng.choice(IDENTS)
    return f"""Traceback (most recent call last):
  File "/srv/app/main.py", line {rng.randint(10, 300)}, in <module>
    main()
  File "/srv/app/main.py", line {rng.randint(10, 300)}, in main
    result = {v}_{a}(payload)
  File "/srv/app/{a}.py", line {rng.randint(10, 300)}, in {v}_{a}
    return data["{a}"]["{rng.choice(IDENTS)}"]
KeyError: '{rng.choice(IDENTS)}'"""


def _shell(rng: random.Random) -> str:
    return f"""$ python -m venv .venv
$ source .venv/bin/activate
(.venv) $ pip install -r requirements.txt
Successfully installed {rng.choice(IDENTS)}-{fakes.version(rng).lstrip('v')} numpy-1.26.4
(.venv) $ pytest -q
{'.' * rng.randint(10, 40)}
{rng.randint(10, 40)} passed in {rng.uniform(0.5, 9.9):.2f}s"""


def _csv(rng: random.Random) -> str:
    rows = ["date,city,temperature,rain_mm"]
    for _ in range(rng.randint(6, 15)):
        city = rng.choice(load_bank("en").cities)
        rows.append(f"{fakes.iso_date(rng)},{city},{rng.uniform(-5, 32):.1f},{rng.uniform(0, 30):.1f}")
    return "\n".join(rows)


def _ini(rng: random.Random) -> str:
    return f"""[server]
host = 0.0.0.0
port = {rng.choice([80, 8080, 8443])}
timeout = {rng.randint(5, 120)}

[cache]
backend = redis
ttl_seconds = {rng.randint(60, 86400)}

[paths]
data = /var/lib/{rng.choice(IDENTS)}
logs = /var/log/{rng.choice(IDENTS)}"""


CODE_KINDS = [_python, _javascript, _yaml, _access_log, _json_blob, _sql, _traceback, _shell, _csv, _ini]
CODE_INTROS = [
    "Here is the snippet I used:", "The following configuration worked for me.",
    "Output of the last run:", "Example:", "This is what the logs show after the upgrade:",
]


def code(rng: random.Random, index: int) -> tuple[str, str]:
    """Return the ``index``-th code-like document (kinds are cycled)."""
    body = CODE_KINDS[index % len(CODE_KINDS)](rng)
    if rng.random() < 0.3:
        body = rng.choice(CODE_INTROS) + "\n\n" + body
    return body, "code"


# --------------------------------------------------------------------------- gibberish / mixed

KEYBOARD = ["asdf", "jkl", "qwer", "tyui", "zxcv", "hjkl", "dfgh", "uiop", "bnm", "sdfg", "wert", "xcvb"]
MIX_LANGS = ["en", "de", "fr", "es", "it", "nl", "pt", "pl", "sv", "tr"]


def mixed_language(rng: random.Random) -> tuple[str, str]:
    """Sentences from several languages interleaved in one paragraph."""
    langs = rng.sample(MIX_LANGS, k=rng.randint(3, 5))
    parts = []
    for _ in range(rng.randint(4, 8)):
        lang = rng.choice(langs)
        parts.append(_real_sentences(rng, lang, 1)[0])
    return " ".join(parts), "mixed"


def keyboard_mash(rng: random.Random) -> tuple[str, str]:
    lines = []
    for _ in range(rng.randint(1, 5)):
        words = []
        for _ in range(rng.randint(3, 12)):
            w = "".join(rng.choice(KEYBOARD) for _ in range(rng.randint(1, 3)))
            words.append(w if rng.random() < 0.8 else w.upper())
        lines.append(" ".join(words) + rng.choice(["", "!!", ";", " lol"]))
    return "\n".join(lines), "und"


def numbers_only(rng: random.Random) -> tuple[str, str]:
    lines = [
        " ".join(str(rng.randint(0, 99999)) for _ in range(rng.randint(4, 14)))
        for _ in range(rng.randint(2, 9))
    ]
    return "\n".join(lines), "und"


def random_letters(rng: random.Random) -> tuple[str, str]:
    words = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
        for _ in range(rng.randint(10, 60))
    ]
    return " ".join(words), "und"


def symbols(rng: random.Random) -> tuple[str, str]:
    chunks = ["!!!", "???", "###", "***", "---", "+++", "<<<>>>", "$$$", "%%%", ":-)", "^^", "~~~", "|||"]
    lines = [
        " ".join(rng.choice(chunks) for _ in range(rng.randint(3, 10))) for _ in range(rng.randint(1, 6))
    ]
    return "\n".join(lines), "und"


GIBBERISH_KINDS = [mixed_language, keyboard_mash, numbers_only, mixed_language, random_letters, symbols]


def gibberish(rng: random.Random, index: int) -> tuple[str, str]:
    """Return the ``index``-th mixed-language or gibberish document."""
    return GIBBERISH_KINDS[index % len(GIBBERISH_KINDS)](rng)


# --------------------------------------------------------------------------- other languages


def other_language(rng: random.Random, index: int) -> tuple[str, str]:
    """A short document in a language outside the main set (``banks/other.txt``)."""
    sections = load_sections("other")
    langs = list(sections)
    lang = langs[index % len(langs)]
    pool = sections[lang]
    picked = rng.sample(pool, k=rng.randint(1, min(4, len(pool))))
    return " ".join(picked), lang


# --------------------------------------------------------------------------- tricky records

EMOJI = ["🎉", "🍕", "🌧️", "👍🏽", "😂", "❤️", "👩‍👩‍👧", "🇫🇷", "🇯🇵", "🚲", "☕", "🌻", "🔥", "🙈", "🏳️‍🌈"]
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у"}


def _prose_text(rng: random.Random, lang: str, lo: int, hi: int) -> str:
    return compose(rng, load_bank(lang), lo, hi).render()


def _emoji_text(rng: random.Random) -> tuple[str, str]:
    bank = load_bank("en")
    sents = [fill(rng, bank, t) + " " + "".join(rng.sample(EMOJI, k=rng.randint(1, 3)))
             for t in rng.sample(bank.sentences, k=8)]
    return "\n".join(sents), "en"


def _nfd_french(rng: random.Random) -> tuple[str, str]:
    return unicodedata.normalize("NFD", _prose_text(rng, "fr", 800, 1500)), "fr"


def _zalgo(rng: random.Random) -> tuple[str, str]:
    marks = [chr(c) for c in range(0x0300, 0x036F)]
    text = _prose_text(rng, "en", 300, 600)
    out = []
    for ch in text:
        out.append(ch)
        if ch.isalpha() and rng.random() < 0.3:
            out.extend(rng.choice(marks) for _ in range(rng.randint(1, 4)))
    return "".join(out), "en"


def _rtl(rng: random.Random) -> tuple[str, str]:
    ar = _real_sentences(rng, "ar", 4)
    lines = [
        ar[0] + " (version 2.1) " + ar[1],
        "\u200fשלום, זה טקסט בעברית עם מילה באנגלית: browser.\u200f",
        "\u202bمرحبا بكم في الموقع\u202c \u200eHello world\u200e " + ar[2],
        "Invoice total: \u202e0001 ERUS\u202c USD",
        ar[3],
    ]
    return "\n".join(lines), "ar"


def _long_line(rng: random.Random) -> tuple[str, str]:
    bank = load_bank("en")
    parts: list[str] = []
    while sum(len(p) + 1 for p in parts) < 24000:
        parts.append(fill(rng, bank, rng.choice(bank.sentences)))
    return " ".join(parts), "en"


def _crlf(rng: random.Random, lang: str) -> tuple[str, str]:
    return _prose_text(rng, lang, 900, 1800).replace("\n", "\r\n") + "\r\n", lang


def _cr_only(rng: random.Random) -> tuple[str, str]:
    return _prose_text(rng, "en", 600, 1200).replace("\n", "\r"), "en"


def _zero_width(rng: random.Random) -> tuple[str, str]:
    text = _prose_text(rng, "de", 700, 1200)
    out = []
    for ch in text:
        out.append(ch)
        if ch.isalpha() and rng.random() < 0.04:
            out.append(rng.choice(["\u200b", "\u200d", "\u00ad", "\ufeff"]))
        elif ch == " " and rng.random() < 0.1:
            out[-1] = "\u00a0"
    return "".join(out), "de"


def _homoglyph(rng: random.Random) -> tuple[str, str]:
    text = _prose_text(rng, "en", 500, 900)
    return "".join(HOMOGLYPHS.get(c, c) if rng.random() < 0.15 else c for c in text), "en"


def _fullwidth(rng: random.Random) -> tuple[str, str]:
    head = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in "Fullwidth Sale 2024: 50% OFF")
    bold = "".join(
        chr(0x1D400 + ord(c) - ord("A")) if "A" <= c <= "Z" else c for c in "BOLD UNICODE HEADLINE"
    )
    body = "The ﬁrst ﬂoor oﬃce is now open. " + _prose_text(rng, "en", 400, 700)
    return f"{head}\n{bold}\n{body}", "en"


def _control_chars(rng: random.Random) -> tuple[str, str]:
    text = _prose_text(rng, "en", 600, 1000)
    text = text.replace("\n", "\t \n", 1).replace(". ", ".\x0c ", 1).replace(", ", ",\x0b ", 1)
    return text + "\t\t  ", "en"


def tricky(rng: random.Random) -> list[tuple[str, str, str]]:
    """Return all tricky records as ``(kind, text, lang)`` triples."""
    out: list[tuple[str, str, str]] = []
    for kind, fn in [
        ("emoji", _emoji_text), ("nfd", _nfd_french), ("zalgo", _zalgo), ("rtl_bidi", _rtl),
        ("long_line", _long_line), ("cr_only", _cr_only), ("zero_width", _zero_width),
        ("homoglyph", _homoglyph), ("fullwidth_math", _fullwidth), ("control_chars", _control_chars),
    ]:
        text, lang = fn(rng)
        out.append((kind, text, lang))
    for lang in ("en", "de", "es"):
        text, lang = _crlf(rng, lang)
        out.append(("crlf", text, lang))
    out.append(("empty", "", "und"))
    out.append(("whitespace_only", "  \n\t \n ", "und"))
    return out
