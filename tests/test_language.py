"""Language detection of the training texts, and the warning when the backbone covers English only."""

from __future__ import annotations

import json

import pytest

from fewlabel.data.language import MIN_CHARS, detect_languages
from fewlabel.encoders import backbones

FRENCH = [
    "Ce livre est vraiment passionnant, je l'ai lu en deux jours sans pouvoir le poser.",
    "Très déçu par la qualité de l'impression, les pages se détachent déjà.",
    "Une histoire émouvante, des personnages attachants et une fin surprenante.",
    "Je ne recommande pas ce produit, il est arrivé cassé et le service client ne répond pas.",
]
DUTCH = [
    "Dit boek is echt een aanrader, ik heb het in één adem uitgelezen.",
    "Slecht verhaal, de personages zijn vlak en het einde is voorspelbaar.",
    "De levering was snel en het product werkt precies zoals beschreven.",
]
ENGLISH = [
    "The battery lasts all day and the screen is bright and sharp.",
    "It stopped working after a week and support never answered my emails.",
]


def test_detects_the_languages_of_a_sample():
    found = detect_languages(FRENCH + DUTCH + ENGLISH)
    assert found.sampled == 9
    assert found.main[0] == "fr" and set(found.main) == {"fr", "nl", "en"}
    assert found.share("fr") == pytest.approx(4 / 9)
    assert found.non_english_share == pytest.approx(7 / 9)
    assert found.describe().startswith("French 44%")


def test_short_texts_are_not_counted_and_nothing_usable_is_unknown():
    assert detect_languages(["ok", "bad", "x" * (MIN_CHARS - 1)]).sampled == 0
    assert detect_languages([]).describe() == "unknown"
    assert detect_languages(["ok"] + ENGLISH).sampled == 2


def test_samples_large_sets_with_a_fixed_seed():
    texts = (FRENCH + ENGLISH) * 200
    first, again = detect_languages(texts, sample=50), detect_languages(texts, sample=50)
    assert first.sampled == 50 and first == again


def test_an_english_only_backbone_on_french_texts_is_warned_about():
    warning = backbones.language_warning("mpnet", detect_languages(FRENCH + DUTCH))
    assert warning is not None
    assert "100% of the texts are not in English (French 57%, Dutch 43%)" in warning
    assert "embeddinggemma" in warning and "tfidf" in warning


@pytest.mark.parametrize(
    ("model", "texts"),
    [
        ("mpnet", ENGLISH * 5),  # English texts
        ("mpnet", ENGLISH * 5 + FRENCH[:1]),  # one French text in eleven: under the warning's share
        ("embeddinggemma", FRENCH),  # multilingual backbone
        ("someone/their-model", FRENCH),  # unknown backbone: nothing known to warn about
    ],
)
def test_no_language_warning_when_the_backbone_fits(model, texts):
    assert backbones.language_warning(model, detect_languages(texts)) is None


def test_best_prefers_the_multilingual_backbone_for_non_english_texts(monkeypatch):
    monkeypatch.setattr(backbones, "is_installed", lambda name: name in ("mpnet", "embeddinggemma"))
    model, why = backbones.best_available(FRENCH, detect_languages(FRENCH))
    assert model == "embeddinggemma" and "mostly not in English (French 100%)" in why
    # English texts: embeddinggemma too when its encoding fits the budget, mpnet when it does not.
    assert backbones.best_available(ENGLISH, detect_languages(ENGLISH))[0] == "embeddinggemma"
    assert backbones.best_available(ENGLISH, detect_languages(ENGLISH), budget_seconds=0.0)[0] == "mpnet"
    assert (
        backbones.best_available(FRENCH, detect_languages(FRENCH), budget_seconds=0.0)[0] == "embeddinggemma"
    )
    monkeypatch.setattr(backbones, "is_installed", lambda name: name == "mpnet")
    assert (
        backbones.best_available(FRENCH, detect_languages(FRENCH))[0] == "mpnet"
    )  # and the warning says why not


def _french_reviews(write_csv, path):
    positive = [
        "Un livre magnifique, je le recommande à tous mes amis sans hésiter.",
        "Très belle histoire, les personnages sont attachants et le style est fluide.",
        "Excellent roman, je l'ai dévoré en une soirée, quelle belle surprise.",
        "Une lecture passionnante du début à la fin, bravo à l'auteur.",
        "Superbe livre, émouvant et drôle à la fois, je le relirai avec plaisir.",
        "Un vrai bonheur de lecture, l'intrigue est haletante et bien construite.",
    ]
    negative = [
        "Un livre ennuyeux, je n'ai pas réussi à le finir tellement c'est lent.",
        "Très déçu, l'histoire est plate et les personnages sans intérêt.",
        "Mauvaise traduction, des fautes à chaque page, c'est illisible.",
        "Je ne recommande pas ce roman, la fin est bâclée et sans surprise.",
        "Une perte de temps, rien ne se passe pendant trois cents pages.",
        "Livre arrivé abîmé et contenu décevant, je regrette cet achat.",
    ]
    rows = [[t, "positive"] for t in positive] + [[t, "negative"] for t in negative]
    return write_csv(path, ["text", "label"], rows)


def test_train_says_first_that_an_english_backbone_does_not_cover_french(write_csv, tmp_path):
    from typer.testing import CliRunner

    from conftest import BACKBONE
    from fewlabel.cli.main import app

    data = _french_reviews(write_csv, tmp_path / "fr.csv")
    args = ["train", str(data), "--folds", "3", "--no-diagnostics", "--model", BACKBONE]
    runner = CliRunner(env={"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"})
    embed = runner.invoke(app, [*args, "-o", str(tmp_path / "embed"), "-s", "embed"])
    assert embed.exit_code == 0, embed.output
    first = embed.stdout.strip().splitlines()[0]
    assert first.startswith("Warning: 100% of the texts are not in English (French 100%)"), embed.stdout
    assert "embeddinggemma" in embed.stdout and "tfidf" in embed.stdout
    assert embed.stdout.count("not in English") == 1  # said before training, not again after
    tfidf = runner.invoke(app, [*args, "-o", str(tmp_path / "tfidf"), "-s", "tfidf"])
    assert tfidf.exit_code == 0, tfidf.output
    assert "not in English" not in tfidf.stdout  # TF-IDF reads any language
    metrics = json.loads((tmp_path / "tfidf" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["data"]["languages"] == {"sampled": 12, "shares": {"fr": 1.0}}


def test_on_a_cpu_best_does_not_fine_tune_the_multilingual_backbone(monkeypatch):
    from fewlabel import training
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts

    monkeypatch.setattr(backbones, "is_installed", lambda name: name in ("mpnet", "embeddinggemma"))
    data = LabelledTexts.from_lists(FRENCH + DUTCH, ["positive", "negative"] * 3 + ["positive"])
    notes: list[str] = []
    config, slow, languages, warning = training._backbones(data, TrainConfig(), notes)
    assert config.model == "embeddinggemma" and warning is None  # it covers French and Dutch
    assert slow == [] and any("too large to fine-tune on a CPU" in note for note in notes)
    texts = data.texts * 40  # enough rows for a hold-out split
    backbone, skip = training._slow_plan("finetune", config, texts, 1e6, slow)
    assert skip is not None and skip.startswith("finetune left out")
    by_name = TrainConfig(strategy="finetune", model="embeddinggemma")
    assert training._slow_plan("finetune", by_name, texts, 1e6, slow) == ("embeddinggemma", None)
