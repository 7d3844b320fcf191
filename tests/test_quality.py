"""Quality stage: signals, thresholded decisions, score, and the optional fastText classifier."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.quality import (
    NOT_APPLICABLE,
    QUALITY_REASONS,
    QUALITY_SIGNALS,
    STOP_WORDS,
    QualityClassifier,
    QualityConfig,
    _ngram_repetition,
    normalize_lang,
    quality_reason,
    quality_score,
    quality_signals,
)
from pipelines.quality_train import TrainingError, is_heldout, main, normalize_label, train_quality_classifier

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------------
# Test documents (written for these tests)
# ---------------------------------------------------------------------------------------------------------

CLEAN_EN = (
    "The old harbour town wakes slowly in winter. Fishing boats leave before dawn, and by the time "
    "the bakery opens its shutters the quay is already wet with melted frost and spilled seawater. "
    "Most visitors never see this part of the day, because they arrive on the afternoon train and "
    "leave before the lamps are lit.\n"
    "\n"
    "Local historians like to point out that the town was once far more important than it looks "
    "today. In the eighteenth century its merchants traded salt, timber and wool with ports across "
    "the North Sea, and the customs house near the church still carries the carved arms of a "
    "company that went bankrupt long ago. Records kept in the parish archive show that more than "
    "forty ships were registered here in a single year.\n"
    "\n"
    "The decline came gradually. Larger vessels needed deeper water, the railway favoured the city "
    "to the south, and young people followed the work. What remained was a community that learned "
    "to live with less, repairing what it had instead of replacing it. Some of the stone cottages "
    "along the harbour wall have been in the same families for six generations.\n"
    "\n"
    "Today the town depends on a mixture of small-scale fishing, tourism and remote work. Several "
    "former net lofts have become studios for painters and potters, and a cooperative runs a shop "
    "that sells their work alongside smoked fish and local honey. Residents argue about whether "
    "the change is good for the place, but most agree that it is better than the slow emptying "
    "they remember from the nineties.\n"
    "\n"
    "If you visit, take the coastal path to the lighthouse and come back along the cliffs. The "
    "walk takes about two hours, and on a clear day you can see the islands that gave the harbour "
    "its shelter for centuries."
)

# Curly quotes and an em dash push the text off the ASCII fast path.
CLEAN_EN_UNICODE = CLEAN_EN.replace("If you visit,", "“If you visit,” a guide told us — smiling —")

TINY = "Great post, thanks for sharing!"

REPEATED_LINES = "\n".join(
    [
        "Welcome to our online store.",
        "Free shipping on all orders over fifty dollars.",
        "Sign up for our newsletter today.",
    ]
    * 8
    + ["We sell shoes, bags and accessories for the whole family at fair prices every day."]
)

REPEATED_PARAGRAPHS = "\n\n".join([CLEAN_EN.split("\n\n")[0]] * 4 + CLEAN_EN.split("\n\n")[1:3])

_CITIES = "Paris London Rome Berlin Madrid Vienna Prague Lisbon Dublin Athens Oslo Warsaw Zurich".split()
LINK_FARM = "\n".join(
    f"Click here for cheap flights to {city} and the best hotel deals in {city} today." for city in _CITIES
)

KEYWORD_STUFFING = (
    "cheap shoes online buy cheap shoes best cheap shoes sale discount cheap shoes online store cheap shoes "
    "for men cheap shoes for women cheap shoes free delivery cheap shoes outlet the cheap shoes you want and "
    "cheap shoes to love with cheap shoes that have style cheap shoes of quality cheap shoes cheap shoes "
    "order cheap shoes now cheap shoes deals cheap shoes coupon cheap shoes review cheap shoes near me."
)

_PARAS = CLEAN_EN.split("\n\n")
LOREM = (
    _PARAS[0] + "\n\nLorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
    "laboris nisi ut aliquip ex ea commodo consequat.\n\n" + _PARAS[1]
)

JAVASCRIPT = """Please enable JavaScript in your browser settings to view the content of this page.
This website needs JavaScript to load the articles, the comments and the search box.
JavaScript appears to be turned off, so some parts of the page may not work as expected.
To get the full experience, please switch to a browser that supports JavaScript and reload the page.
If you are using a script blocker, add our domain to the list of allowed sites for JavaScript.
Our help centre explains how to change these settings in the most common browsers and devices.
We are sorry for the inconvenience and thank you for your patience while we fix the issue."""

COOKIE_NOTICE = """This website uses cookies to improve your experience and to show you relevant offers.
By continuing to browse you agree to our use of cookies as described in the cookie policy.
You can read our privacy policy to learn how we collect and store data about visitors.
Our terms of use explain the rules that apply to every account created on the site.
Some partners also use cookies to measure how many people open the newsletter each week.
Thank you for reading the small print, we know it is not the most exciting part of a visit."""

BULLET_LIST = "\n".join(
    f"- {item}"
    for item in [
        "Preheat the oven to a moderate temperature before you start with the dough",
        "Mix flour, salt and a pinch of sugar in a large bowl until evenly combined",
        "Rub in the cold butter with your fingertips until the mixture looks like breadcrumbs",
        "Add the milk gradually and stir with a knife to form a soft dough",
        "Turn out onto a floured surface and knead very lightly for a few seconds",
        "Pat the dough into a thick round and cut out the scones with a sharp cutter",
        "Brush the tops with beaten egg so that they brown nicely in the heat",
        "Bake on the top shelf for about twelve minutes until risen and golden",
        "Cool on a wire rack and serve with jam and clotted cream on the same day",
    ]
)

SHORT_LINES = "\n".join(
    [
        "The sun came up.", "Birds sang loud.", "I made some tea.", "The cat woke up.", "It ate its food.",
        "We went outside.", "The air was cold.", "A dog ran past.", "Kids rode bikes.", "The bus was late.",
        "I read the news.", "Rain began to fall.", "We ran back in.", "The tea was warm.", "Then I slept.",
        "Night came at last.",
    ]
)  # fmt: skip

HASHTAGS = "Photos from the trip to the coast with the family.\n" + " ".join(
    f"#{w}" for w in sorted(set(re.findall(r"[a-z]{4,}", CLEAN_EN.lower())))[:80]
)

ELLIPSIS_LINES = "\n".join(
    " ".join(sentence.split()[:12]) + "..."
    for sentence in re.split(r"(?<=\.)\s+", CLEAN_EN)
    if len(sentence.split()) > 12
)

CODE_PAGE = CLEAN_EN + "\n\nfunction addOne(x) { return x + 1; }"

ZH = (
    "城市的清晨总是从公园开始的。天还没有完全亮，湖边的小路上已经有人在慢跑，老人们在树下打太极拳，"
    "远处传来几声鸟叫。卖早点的小摊冒着热气，豆浆和油条的香味顺着风飘到很远的地方。\n"
    "很多年轻人其实并不知道，这座公园在五十年前只是一片荒地。当时的居民在周末自发地来这里种树、挖池"
    "塘，用了将近十年的时间，才把它变成今天的样子。公园入口处的石碑上刻着那一代人的名字，每年春天都"
    "会有学生来这里参观。\n"
    "随着城市不断扩大，公园周围盖起了高楼，交通也变得越来越拥挤。有人提议把一部分绿地改成停车场，但"
    "这个建议遭到了附近居民的强烈反对。经过几次公开讨论，市政府最终决定保留全部绿地，并在地铁站旁边"
    "另外修建一个地下停车库。\n"
    "现在，公园不仅是散步和锻炼的地方，也是许多人交流的空间。周末常常有读书会、露天音乐会和旧物交换"
    "活动，孩子们在草地上放风筝，父母坐在长椅上聊天。对于住在附近的人来说，这片绿色已经成为日常生活"
    "中不可缺少的一部分。\n"
    "如果你有机会来这座城市旅行，不妨早一点起床，到湖边走一走。你会发现，真正让一个地方充满活力的，"
    "往往不是高楼大厦，而是人们在一起生活的方式。"
)

JA = (
    "駅前の小さな本屋は、今年で創業六十年を迎えた。店主の祖父が戦後まもなく始めた店で、今は三代目の"
    "夫婦が二人で切り盛りしている。棚には新刊だけでなく、地元の歴史や郷土料理に関する古い本も並んで"
    "いる。\n"
    "大型書店やネット通販が広がるなかで、町の本屋は次々と姿を消してきた。この店も一時は閉店を考えた"
    "が、常連客から続けてほしいという声が多く寄せられたという。そこで夫婦は、店の奥に小さな読書スペ"
    "ースを作り、月に一度、作家を招いて話を聞く会を開くことにした。\n"
    "最初は十人ほどしか集まらなかったが、口コミで評判が広がり、今では予約がすぐに埋まるほどの人気に"
    "なった。参加者の多くは近所に住む人たちで、会が終わったあとも本の話で盛り上がることが多い。\n"
    "店主は「本を売るだけでなく、人と人が出会う場所にしたい」と話す。来年には、子ども向けの読み聞か"
    "せの時間も増やす予定だそうだ。"
)

TH = (
    "ตลาดน้ำในจังหวัดเล็กๆ "
    "ริมแม่น้ำแห่งนี้เปิดขายของมาตั้งแต่สมัยที่การเดินทางทางเรือยังเป็นเรื่องปกติของชาวบ้าน "
    "ทุกเช้าแม่ค้าจะพายเรือบรรทุกผลไม้ ผักสด และขนมหวานมาจอดเรียงกันตามท่าน้ำ "
    "นักท่องเที่ยวที่มาถึงก่อนแปดโมงจะได้เห็นบรรยากาศที่คึกคักที่สุดของวัน\n"
    "ในช่วงสิบปีที่ผ่านมา ถนนสายใหม่ทำให้คนในหมู่บ้านเดินทางเข้าเมืองได้สะดวกขึ้นมาก "
    "ร้านค้าหลายร้านย้ายขึ้นไปอยู่บนฝั่ง และจำนวนเรือในตลาดก็ลดลงเรื่อยๆ "
    "ผู้ใหญ่บ้านจึงชวนชาวบ้านมาประชุมกันเพื่อหาทางรักษาตลาดเก่าเอาไว้\n"
    "ผลของการประชุมคือการตั้งกลุ่มอนุรักษ์ที่ดูแลความสะอาดของแม่น้ำ ซ่อมแซมสะพานไม้ "
    "และจัดเทศกาลอาหารพื้นบ้านปีละสองครั้ง "
    "เด็กนักเรียนในโรงเรียนใกล้เคียงก็ได้เรียนรู้วิธีทำขนมไทยโบราณจากคุณยายที่ขายของมานานกว่าสี่สิบปี\n"
    "ทุกวันนี้ตลาดน้ำไม่ได้ใหญ่เหมือนเมื่อก่อน แต่ก็ยังมีชีวิตชีวา "
    "คนที่มาเที่ยวมักจะบอกว่าสิ่งที่ประทับใจที่สุดไม่ใช่สินค้าราคาถูก "
    "แต่เป็นรอยยิ้มและเรื่องเล่าของคนที่อยู่กับแม่น้ำมาทั้งชีวิต"
)

FR = (
    "Le marché couvert de la vieille ville ouvre ses portes à six heures, bien avant que les "
    "bureaux ne s'animent. Les maraîchers installent leurs cagettes de légumes, le fromager "
    "découpe les premières meules et l'odeur du pain chaud se mêle à celle du café. Pour beaucoup "
    "d'habitants, c'est le vrai début de la journée.\n"
    "\n"
    "Le bâtiment date de la fin du dix-neuvième siècle. Sa charpente métallique, longtemps cachée "
    "sous des couches de peinture grise, a été restaurée il y a quelques années grâce à une "
    "souscription publique. Les commerçants racontent avec fierté que plus de deux mille personnes "
    "ont participé à la collecte.\n"
    "\n"
    "Aujourd'hui, le marché attire aussi des visiteurs venus de loin. Les guides le recommandent "
    "pour sa diversité et pour l'accueil des marchands, qui prennent le temps d'expliquer "
    "l'origine de leurs produits et de donner des conseils de préparation. Le samedi, des "
    "musiciens jouent près de l'entrée principale."
)

SPAM_CASES = {
    "repeated_lines": (REPEATED_LINES, "gopher_dup_line_frac"),
    "repeated_paragraphs": (REPEATED_PARAGRAPHS, "gopher_dup_para_frac"),
    "link_farm": (LINK_FARM, "gopher_top_3gram_char_frac"),
    "keyword_stuffing": (KEYWORD_STUFFING, "gopher_top_2gram_char_frac"),
    "lorem_ipsum": (LOREM, "c4_lorem_ipsum"),
    "javascript_notice": (JAVASCRIPT, "c4_javascript_line_frac"),
    "cookie_notice": (COOKIE_NOTICE, "c4_policy_line_frac"),
    "bullet_list": (BULLET_LIST, "gopher_bullet_line_frac"),
    "hashtags": (HASHTAGS, "gopher_hash_word_ratio"),
    "ellipsis_lines": (ELLIPSIS_LINES, "gopher_ellipsis_line_frac"),
    "code": (CODE_PAGE, "c4_curly_brace"),
    "short_lines": (SHORT_LINES, "fineweb_short_line_frac"),
    "tiny": (TINY, "gopher_min_words"),
}

DEFAULT = QualityConfig()


def _reason(text: str, lang: str | None = "en", config: QualityConfig = DEFAULT) -> str | None:
    return quality_reason(quality_signals(text, lang), lang, config)


# ---------------------------------------------------------------------------------------------------------
# Signals contract
# ---------------------------------------------------------------------------------------------------------


def test_signal_names_are_prefixed_unique_and_stable() -> None:
    assert all(name.startswith("q_") for name in QUALITY_SIGNALS)
    assert len(set(QUALITY_SIGNALS)) == len(QUALITY_SIGNALS)
    assert "q_word_count" in QUALITY_SIGNALS and QUALITY_SIGNALS[-1] == "q_classifier_hq"
    assert len(set(QUALITY_REASONS)) == len(QUALITY_REASONS)


@pytest.mark.parametrize(
    "text,lang",
    [
        ("", None),
        ("", "en"),
        ("   \n\n\t  ", "en"),
        ("\n", "zh"),
        (TINY, "en"),
        (CLEAN_EN, "en"),
        (CLEAN_EN_UNICODE, None),
        (ZH, "zh-Hans"),
        (TH, "tha_Thai"),
        (JA, "__label__ja"),
        (KEYWORD_STUFFING, "xx"),
        ("x" * 2000, "en"),
        ("{" * 50 + "\r\n" * 20, "ko"),
    ],
)
def test_signal_keys_always_exact_and_finite(text: str, lang: str | None) -> None:
    signals = quality_signals(text, lang)
    assert list(signals) == list(QUALITY_SIGNALS)
    assert all(isinstance(v, float) and math.isfinite(v) for v in signals.values())
    assert signals["q_classifier_hq"] == NOT_APPLICABLE
    reason = quality_reason(signals, lang, DEFAULT)
    assert reason is None or reason in QUALITY_REASONS
    assert 0.0 <= quality_score(signals) <= 1.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab c.\n#{…!-•中文ไทยé’\t")) | st.characters(),
        max_size=400,
    ),
    lang=st.sampled_from([None, "en", "de", "zh", "th", "ja", "ko", "vi", "xx"]),
)
def test_signals_contract_on_arbitrary_text(text: str, lang: str | None) -> None:
    signals = quality_signals(text, lang)
    assert tuple(signals) == QUALITY_SIGNALS
    for name, value in signals.items():
        assert isinstance(value, float) and math.isfinite(value), name
        # ratios and fractions either apply (>= 0) or are marked not applicable (-1)
        assert value >= 0.0 or value == NOT_APPLICABLE, name
        if name.endswith("_frac"):
            assert value <= 1.0 + 1e-9, (name, value)
    assert 0.0 <= quality_score(signals) <= 1.0
    reason = quality_reason(signals, lang, DEFAULT)
    assert reason is None or reason in QUALITY_REASONS


def test_signals_are_deterministic_and_independent_of_classifier_default() -> None:
    assert quality_signals(LINK_FARM, "en") == quality_signals(LINK_FARM, "en")


# ---------------------------------------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [CLEAN_EN, CLEAN_EN_UNICODE])
@pytest.mark.parametrize("lang", ["en", None, "en-GB"])
def test_clean_english_prose_passes(text: str, lang: str | None) -> None:
    assert _reason(text, lang) is None


def test_clean_french_prose_passes_with_french_stop_words() -> None:
    signals = quality_signals(FR, "fr")
    assert signals["q_stop_word_count"] >= 10
    assert quality_reason(signals, "fr", DEFAULT) is None


@pytest.mark.parametrize("case", sorted(SPAM_CASES))
def test_boilerplate_and_spam_fail_with_expected_reason(case: str) -> None:
    text, expected = SPAM_CASES[case]
    assert _reason(text, "en") == expected


def test_tiny_document_fails_min_words() -> None:
    signals = quality_signals(TINY, "en")
    assert signals["q_word_count"] == 5
    assert quality_reason(signals, "en", DEFAULT) == "gopher_min_words"
    assert _reason("", "en") == "gopher_min_words"


def test_english_without_stop_words_fails_only_where_a_list_exists() -> None:
    no_stop = re.sub(r"\b(the|be|to|of|and|that|have|with|The)\b ?", "", CLEAN_EN)
    assert quality_signals(no_stop, "en")["q_stop_word_count"] < 2
    assert _reason(no_stop, "en") == "gopher_stop_words"
    # a language without a list (or unknown language) skips the rule instead of failing it
    assert quality_signals(no_stop, "xx")["q_stop_word_count"] == NOT_APPLICABLE
    assert _reason(no_stop, "xx") is None
    assert _reason(no_stop, None) is None


def test_stop_word_lists_cover_required_languages() -> None:
    required = {"en", "fr", "de", "es", "it", "pt", "nl", "ru", "pl", "sv", "tr", "id"}
    assert required <= set(STOP_WORDS)
    assert STOP_WORDS["en"] == frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
    for lang, words in STOP_WORDS.items():
        assert all(w == w.lower() and " " not in w for w in words), lang
        if lang != "en":
            assert 15 <= len(words) <= 40, lang


@pytest.mark.parametrize(
    "text,lang", [(ZH, "zh"), (ZH, None), (JA, "ja"), (JA, None), (TH, "th"), (TH, None)]
)
def test_cjk_and_thai_prose_is_not_rejected(text: str, lang: str | None) -> None:
    signals = quality_signals(text, lang)
    # word-based rules must not apply blindly to scripts without spaces
    assert signals["q_mean_word_length"] == NOT_APPLICABLE
    assert signals["q_stop_word_count"] == NOT_APPLICABLE
    # characters are counted as scaled words, so a few hundred characters is a real document
    assert signals["q_word_count"] >= DEFAULT.min_words
    assert signals["q_alpha_word_frac"] >= DEFAULT.min_alpha_words_frac
    assert quality_reason(signals, lang, DEFAULT) is None


def test_thai_has_no_terminal_punctuation_rules() -> None:
    signals = quality_signals(TH, "th")
    assert signals["q_terminal_punct_line_frac"] == NOT_APPLICABLE
    assert signals["q_c4_sentence_count"] == NOT_APPLICABLE


def test_cjk_repetition_is_still_caught() -> None:
    stuffed = "便宜手机便宜手机最便宜的手机在这里买便宜手机。" * 30
    assert _reason(stuffed, "zh") in {r for r in QUALITY_REASONS if r.startswith("gopher_")}


def test_korean_and_vietnamese_skip_word_length_only() -> None:
    ko = quality_signals("한국어 문장은 띄어쓰기를 합니다. " * 3, "ko")
    assert ko["q_mean_word_length"] == NOT_APPLICABLE
    en = quality_signals(CLEAN_EN, "en")
    assert 3.0 < en["q_mean_word_length"] < 10.0


def test_same_signals_different_config_different_decision() -> None:
    """Score, then decide: thresholds change the decision without recomputing signals."""
    signals = quality_signals(CLEAN_EN, "en")
    assert quality_reason(signals, "en", DEFAULT) is None
    assert quality_reason(signals, "en", QualityConfig(min_words=1000)) == "gopher_min_words"
    assert quality_reason(signals, "en", QualityConfig(max_words=100)) == "gopher_max_words"
    assert quality_reason(signals, "en", QualityConfig(min_stop_words=500)) == "gopher_stop_words"
    assert quality_reason(signals, "en", QualityConfig(min_mean_word_length=6.0)) == "gopher_mean_word_length"

    spam = quality_signals(REPEATED_LINES, "en")
    assert quality_reason(spam, "en", DEFAULT) == "gopher_dup_line_frac"
    relaxed = QualityConfig(max_dup_line_frac=1.0)
    assert quality_reason(spam, "en", relaxed) == "gopher_dup_line_char_frac"
    skipped = QualityConfig(skip_rules=("gopher_dup_line_frac", "gopher_dup_line_char_frac"))
    assert quality_reason(spam, "en", skipped) not in {None, *skipped.skip_rules}

    code = quality_signals(CODE_PAGE, "en")
    assert quality_reason(code, "en", DEFAULT) == "c4_curly_brace"
    assert quality_reason(code, "en", QualityConfig(forbid_curly_brace=False)) is None


def test_fineweb_char_dup_rule_is_stricter_than_gopher() -> None:
    # one repeated line: under Gopher's 20% but over FineWeb's 1% of characters
    text = CLEAN_EN + "\n\nShare this article with your friends.\nShare this article with your friends."
    signals = quality_signals(text, "en")
    assert 0.01 <= signals["q_dup_line_char_frac"] < 0.2
    assert quality_reason(signals, "en", DEFAULT) == "fineweb_char_dup_frac"
    assert quality_reason(signals, "en", QualityConfig(max_char_dup_ratio=0.1)) is None


def test_not_applicable_signals_never_fail_and_missing_signals_are_tolerated() -> None:
    signals = dict(quality_signals(CLEAN_EN, "en"))
    signals["q_mean_word_length"] = NOT_APPLICABLE
    signals["q_stop_word_count"] = NOT_APPLICABLE
    assert quality_reason(signals, "en", QualityConfig(min_stop_words=10**6)) is None
    del signals["q_short_line_frac"]
    assert quality_reason(signals, "en", DEFAULT) is None


def test_classifier_rule_uses_probability_threshold_and_languages() -> None:
    signals = dict(quality_signals(CLEAN_EN, "en"))
    cfg = QualityConfig(classifier_model="model.bin", classifier_threshold=0.5)
    signals["q_classifier_hq"] = 0.2
    assert quality_reason(signals, "en", cfg) == "classifier_low"
    assert quality_reason(signals, "en", dataclasses.replace(cfg, classifier_model="")) is None
    english_only = dataclasses.replace(cfg, classifier_langs=("en",))
    assert quality_reason(signals, "de", english_only) is None
    assert quality_reason(signals, "eng", english_only) == "classifier_low"
    signals["q_classifier_hq"] = 0.9
    assert quality_reason(signals, "en", cfg) is None
    signals["q_classifier_hq"] = NOT_APPLICABLE  # not computed: cannot fail
    assert quality_reason(signals, "en", cfg) is None


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="skip_rules"):
        QualityConfig(skip_rules=("no_such_rule",))
    with pytest.raises(ValueError, match="max_top_ngram_char_frac"):
        QualityConfig(max_top_ngram_char_frac=(0.2,))


def test_the_range_ends_config_accepts_keep_what_docs_pipeline_says() -> None:
    """The ends QualityConfig accepts switch a strict rule off; FineWeb's at-the-limit rules need skip_rules."""
    signals = dict(quality_signals(CLEAN_EN, "en"))
    signals.update(q_dup_line_frac=1.0, q_newline_word_ratio=5.0, q_classifier_hq=0.0)
    assert quality_reason(signals, "en", DEFAULT) == "gopher_dup_line_frac"
    off = QualityConfig(max_dup_line_frac=1.0, max_list_ratio=math.inf, min_words=0,
                        classifier_model="model.bin", classifier_threshold=0.0)
    assert quality_reason(signals, "en", off) is None
    signals = dict(quality_signals(CLEAN_EN, "en"), q_short_line_frac=1.0, q_terminal_punct_line_frac=0.0)
    fineweb_ends = QualityConfig(max_short_line_frac=1.0, min_terminal_punct_lines_frac=0.0)
    assert quality_reason(signals, "en", fineweb_ends) == "fineweb_line_punct_frac"
    skipped = dataclasses.replace(fineweb_ends, skip_rules=("fineweb_line_punct_frac",))
    assert quality_reason(signals, "en", skipped) == "fineweb_short_line_frac"


def test_normalize_lang() -> None:
    assert normalize_lang("EN") == "en"
    assert normalize_lang("en-US") == "en"
    assert normalize_lang("eng_Latn") == "en"
    assert normalize_lang("__label__zh") == "zh"
    assert normalize_lang("zh-Hant") == "zh"
    assert normalize_lang("") is None and normalize_lang(None) is None


# ---------------------------------------------------------------------------------------------------------
# n-gram repetition definitions
# ---------------------------------------------------------------------------------------------------------


def test_ngram_repetition_values() -> None:
    # "x y" occurs twice: 2 x 2 chars of 5 word chars
    top, dup = _ngram_repetition(["x", "y", "x", "y", "z"], [2], [5])
    assert top == [pytest.approx(0.8)] and dup == [0.0]
    # nothing repeats: no top n-gram mass
    top, _ = _ngram_repetition(["aa", "bb", "cc", "dd"], [2, 3], [])
    assert top == [0.0, 0.0]
    # a 5-word phrase twice: every word is covered by a duplicated 5-gram, counted once
    words = ["alpha", "beta", "gamma", "delta", "eps"] * 2
    _, dup = _ngram_repetition(words, [], [5, 6, 10])
    assert dup == [pytest.approx(1.0), pytest.approx(0.0), pytest.approx(0.0)]
    # overlapping repeats do not double-count characters
    _, dup = _ngram_repetition(["a"] * 20, [], [5])
    assert dup == [pytest.approx(1.0)]
    top, _ = _ngram_repetition(["a"] * 5, [2], [])
    assert top == [1.0]  # 4 overlapping "a a" would be 8 of 5 characters: capped
    # half new text: covered fraction is the repeated part only
    words = ["one", "two", "six", "ten", "red"] * 2 + ["aaa", "bbb", "ccc", "ddd", "eee", "fff", "ggg"]
    _, dup = _ngram_repetition(words, [], [5])
    assert dup == [pytest.approx(30 / 51)]


def _repetition_by_counting(words: list[str], top_ns: list[int], dup_ns: list[int]) -> tuple[list, list]:
    """The definitions in _ngram_repetition's docstring, by counting word tuples."""
    total = sum(map(len, words))
    top, dup = [], []
    for n in top_ns + dup_ns:
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)] if total and len(words) >= 2 else []
        counts = Counter(grams)
        repeated = {gram for gram, count in counts.items() if count > 1}
        if n in top_ns:
            m = max((counts[gram] for gram in repeated), default=0)
            chars = max((sum(map(len, gram)) for gram in repeated if counts[gram] == m), default=0)
            top.append(min(1.0, m * float(chars) / total) if repeated else 0.0)
        else:
            covered = {i + k for i, gram in enumerate(grams) if gram in repeated for k in range(n)}
            dup.append(float(sum(len(words[i]) for i in covered)) / total if repeated else 0.0)
    return top, dup


def test_ngram_repetition_equals_counting_on_random_and_repetitive_texts() -> None:
    # Hashing, the roll and the switch to plain Python for few positions change nothing: the values are
    # exactly those of counting word tuples, for every word count and n up to 40 (Thai's scaled n).
    rng = random.Random(11)
    cases = [CLEAN_EN.lower().split(), *(text.lower().split() for text, _ in SPAM_CASES.values())]
    for _ in range(300):
        vocabulary = [rng.choice(["a", "bb", "ccc", "dddd", "é", "字"]) + str(i) for i in range(rng.randint(1, 12))]
        cases.append([rng.choice(vocabulary) for _ in range(rng.randint(0, 300))])
        phrase = [rng.choice(vocabulary) for _ in range(rng.randint(1, 15))]
        cases.append(phrase * rng.randint(1, 30) + [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))])
    for top_ns, dup_ns in (([2, 3, 4], [5, 6, 7, 8, 9, 10]), ([3, 5, 6], [8, 9, 11, 12, 14, 15]),
                           ([8, 12, 16], [20, 24, 28, 32, 36, 40])):
        for words in cases:
            assert _ngram_repetition(words, top_ns, dup_ns) == _repetition_by_counting(words, top_ns, dup_ns)


def test_ngram_top_fraction_is_independent_of_word_order_ties() -> None:
    a = _ngram_repetition(["aa", "b", "aa", "b", "c", "dd", "c", "dd"], [2], [])
    b = _ngram_repetition(["c", "dd", "c", "dd", "aa", "b", "aa", "b"], [2], [])
    assert a == b


# ---------------------------------------------------------------------------------------------------------
# Score
# ---------------------------------------------------------------------------------------------------------


def test_quality_score_ranks_clean_prose_above_spam() -> None:
    clean = quality_score(quality_signals(CLEAN_EN, "en"))
    assert 0.8 < clean <= 1.0
    for case, (text, _) in SPAM_CASES.items():
        spam = quality_score(quality_signals(text, "en"))
        assert 0.0 <= spam < clean, case
    assert quality_score(quality_signals("", "en")) == 0.0


def test_quality_score_prefers_classifier_probability() -> None:
    signals = dict(quality_signals(KEYWORD_STUFFING, "en"))
    signals["q_classifier_hq"] = 0.93
    assert quality_score(signals) == pytest.approx(0.93)
    signals["q_classifier_hq"] = 1.0000002  # fastText can overshoot by rounding
    assert quality_score(signals) == 1.0


# ---------------------------------------------------------------------------------------------------------
# Classifier training and use
# ---------------------------------------------------------------------------------------------------------

_HQ_WORDS = (
    "the committee published a detailed report on regional water management and its long term effects on "
    "agriculture research shows that careful planning reduces costs while historians describe how the city "
    "developed its libraries schools and museums during the previous century scientists measured temperature "
    "changes across several seasons and discussed their methods in a careful peer reviewed article"
).split()
_LQ_WORDS = (
    "click here buy now cheap free bonus casino win prize hot deals limited offer subscribe best "
    "price viagra discount coupon download free crack online sale xxx amazing click now hurry bargain"
).split()


def _synthetic(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        if i % 2 == 0:
            words = rng.choices(_HQ_WORDS, k=rng.randint(25, 45))
            rows.append((" ".join(words).capitalize() + ".", "hq"))
        else:
            words = rng.choices(_LQ_WORDS, k=rng.randint(10, 30))
            rows.append((" ".join(words).upper() + " !!!", "lq"))
    return rows


SMALL_PARAMS = {"epoch": 15, "lr": 0.5, "dim": 16, "bucket": 20_000, "wordNgrams": 2, "seed": 0}


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("clf") / "quality.bin"
    report = train_quality_classifier(_synthetic(400), out, **SMALL_PARAMS)
    return out, report


def test_train_and_predict_end_to_end(trained_model: tuple[Path, dict]) -> None:
    path, report = trained_model
    assert path.is_file()
    assert report["train_examples"]["hq"] > 0 and report["train_examples"]["lq"] > 0
    assert sum(report["heldout_examples"].values()) > 0
    assert report["precision"] >= 0.9 and report["recall"] >= 0.9

    clf = QualityClassifier(str(path))
    clf.load()
    hq_texts = [t for t, lab in _synthetic(60, seed=7) if lab == "hq"]
    lq_texts = [t for t, lab in _synthetic(60, seed=7) if lab == "lq"]
    hq = [clf.predict_hq(t) for t in hq_texts]
    lq = [clf.predict_hq(t + "\nsecond line\r\nthird") for t in lq_texts]  # newlines must not break fastText
    assert all(0.0 <= p <= 1.0 for p in hq + lq)
    assert sum(hq) / len(hq) > sum(lq) / len(lq) + 0.5
    assert clf.predict_hq_batch(hq_texts[:3]) == pytest.approx(hq[:3], abs=1e-6)
    assert clf.predict_hq_batch([]) == []

    signals = quality_signals(CLEAN_EN, "en", classifier=clf)
    assert 0.0 <= signals["q_classifier_hq"] <= 1.0
    assert quality_score(signals) == pytest.approx(signals["q_classifier_hq"])


def test_classifier_pickles_without_model_and_loads_lazily(trained_model: tuple[Path, dict]) -> None:
    path, _ = trained_model
    clf = QualityClassifier(str(path))
    clf.load()
    clone = pickle.loads(pickle.dumps(clf))
    assert clone.model_path == str(path) and clone._model is None
    assert 0.0 <= clone.predict_hq("Research shows that careful planning reduces costs.") <= 1.0  # lazy load


def test_training_is_deterministic(tmp_path: Path) -> None:
    rows = _synthetic(120, seed=3)
    a = train_quality_classifier(rows, tmp_path / "a.bin", **SMALL_PARAMS)
    b = train_quality_classifier(rows, tmp_path / "b.bin", **SMALL_PARAMS)
    assert a["heldout_examples"] == b["heldout_examples"]
    text = "the committee published a detailed report"
    assert QualityClassifier(str(tmp_path / "a.bin")).predict_hq(text) == pytest.approx(
        QualityClassifier(str(tmp_path / "b.bin")).predict_hq(text), abs=1e-6
    )


def test_heldout_split_is_stable_and_about_ten_percent() -> None:
    texts = [f"document number {i}" for i in range(5000)]
    held = [t for t in texts if is_heldout(t)]
    assert 0.07 < len(held) / len(texts) < 0.13
    assert held == [t for t in texts if is_heldout(t)]


@pytest.mark.parametrize(
    "value,label",
    [
        ("hq", "__label__hq"),
        (1, "__label__hq"),
        ("LQ", "__label__lq"),
        (0, "__label__lq"),
        (True, "__label__hq"),
        ("false", "__label__lq"),
    ],
)
def test_normalize_label(value: object, label: str) -> None:
    assert normalize_label(value) == label


def test_train_rejects_bad_records(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no training examples"):
        train_quality_classifier([], tmp_path / "m.bin")
    with pytest.raises(TrainingError, match="one class"):
        train_quality_classifier([("some text", "hq")] * 20, tmp_path / "m.bin")
    with pytest.raises(TrainingError, match="unknown label"):
        train_quality_classifier([("a", "maybe"), ("b", "hq")], tmp_path / "m.bin")
    with pytest.raises(TrainingError, match="unknown training parameters"):
        train_quality_classifier(_synthetic(10), tmp_path / "m.bin", epochs=3)
    with pytest.raises(TrainingError, match="lower --lr"):  # diverges to NaN: a clear error, not a crash
        train_quality_classifier(_synthetic(100), tmp_path / "m.bin", lr=1e6, dim=16, bucket=1000)


def test_label_like_words_in_text_do_not_become_labels(tmp_path: Path) -> None:
    rows = [(t + " __label__lq" if lab == "hq" else t, lab) for t, lab in _synthetic(200)]
    report = train_quality_classifier(rows, tmp_path / "m.bin", **SMALL_PARAMS)
    assert report["precision"] >= 0.9 and report["recall"] >= 0.9
    clf = QualityClassifier(str(tmp_path / "m.bin"))
    assert clf.predict_hq("the committee published a detailed report __label__lq") > 0.5


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_cli_trains_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"body": t, "y": 1 if lab == "hq" else 0} for t, lab in _synthetic(200)]
    data = _write_jsonl(tmp_path / "labelled.jsonl", rows)
    out = tmp_path / "models" / "q.bin"
    argv = ["--input", str(data), "--output", str(out), "--text-field", "body", "--label-field", "y",
            "--epoch", "10", "--dim", "16", "--bucket", "20000"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert out.is_file() and report["model"] == str(out)
    assert {"precision", "recall", "f1", "accuracy", "train_examples", "heldout_examples"} <= set(report)
    assert 0.0 <= report["precision"] <= 1.0 and 0.0 <= report["recall"] <= 1.0


def test_cli_quantize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _write_jsonl(tmp_path / "l.jsonl", [{"text": t, "label": lab} for t, lab in _synthetic(200)])
    out = tmp_path / "q.ftz"
    assert main(["--input", str(data), "--output", str(out), "--dim", "16", "--bucket", "20000",
                 "--quantize"]) == 0  # fmt: skip
    capsys.readouterr()
    assert 0.0 <= QualityClassifier(str(out)).predict_hq("click here buy now") <= 1.0


def test_cli_errors_on_single_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"text": f"good text {i}", "label": "hq"} for i in range(50)]
    data = _write_jsonl(tmp_path / "one.jsonl", rows)
    assert main(["--input", str(data), "--output", str(tmp_path / "m.bin")]) != 0
    assert "only one class" in capsys.readouterr().err
    assert not (tmp_path / "m.bin").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "not found"),
        ("", "no training examples"),
        ('{"text": "a", "label": "hq"}\nnot json\n', ":2: not valid JSON"),
        ('{"text": "a"}\n', "missing field"),
        ('{"text": 3, "label": "hq"}\n', "not a string"),
        ('{"text": "a", "label": "meh"}\n', "unknown label"),
    ],
)
def test_cli_errors_on_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["--input", str(path), "--output", str(tmp_path / "m.bin")]) == 2
    assert message in capsys.readouterr().err


def test_cli_runs_as_module(tmp_path: Path) -> None:
    data = _write_jsonl(tmp_path / "one.jsonl", [{"text": "only low", "label": 0}] * 5)
    command = [sys.executable, "-m", "pipelines.quality_train"]
    proc = subprocess.run(
        [*command, "--input", str(data), "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "error: only one class" in proc.stderr
