"""EDA augmentation: the WordNet reader, the four edits, and augmentation confined to training folds."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabel.evaluation.scores import cross_validate, folds_for
from fewlabel.strategies import augment as aug
from fewlabel.strategies.tfidf import TfidfLogReg

HEADER = "  1 This software and database is being provided to you, the LICENSEE, by  \n"
# Lines in the WordNet 3.0 data-file layout: offset, lexicographer file, type, word count (hex), words.
DATA = {
    "data.adj": [
        "00001740 00 a 02 good 0 beneficial 0 000 | promoting or enhancing well-being  ",
        "00002098 00 a 03 bad 0 awful(a) 0 terrible 0 000 | having undesirable qualities  ",
    ],
    "data.noun": ["00001930 03 n 02 battery 0 electric_battery 0 000 | a device that produces electricity  "],
    "data.verb": ["00002325 29 v 02 break 0 fail 0 000 | stop operating  "],
    "data.adv": ["00001740 02 r 02 quickly 0 rapidly 0 000 | with speed  "],
}
REAL_WORDNET = pytest.mark.skipif(not aug.wordnet_available(), reason="WordNet 3.0 data files not installed")


@pytest.fixture
def wordnet(tmp_path, monkeypatch):
    """A tiny WordNet in the real file format, used through FEWLABEL_WORDNET."""
    for name, lines in DATA.items():
        (tmp_path / name).write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv(aug.WORDNET_ENV, str(tmp_path))
    return tmp_path


def test_reader_parses_words_and_markers(wordnet):
    synsets = aug.read_synsets(wordnet / "data.adj")
    assert synsets == [["good", "beneficial"], ["bad", "awful", "terrible"]]
    table = aug.synonyms()
    assert table["bad"] == ("awful", "terrible")
    assert table["battery"] == ("electric battery",)
    assert table["quickly"] == ("rapidly",)


def test_missing_wordnet_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv(aug.WORDNET_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(aug.WordNetMissingError, match="apt-get install wordnet-base"):
        aug.wordnet_dir()
    with pytest.raises(aug.WordNetMissingError, match=aug.WORDNET_ENV):
        aug.Augmented(strategy="tfidf")


def test_not_wordnet_data_is_a_clear_error(tmp_path):
    (tmp_path / "data.adj").write_text("hello world\n", encoding="utf-8")
    with pytest.raises(aug.WordNetMissingError, match="not a WordNet 3.0 data file"):
        aug.read_synsets(tmp_path / "data.adj")


def test_eda_is_deterministic_distinct_and_keeps_negations(wordnet):
    text = "The battery is not good and it will break quickly, awful."
    variants = aug.eda(text, n_aug=8, alpha=0.2, seed=1)
    assert variants == aug.eda(text, n_aug=8, alpha=0.2, seed=1)
    assert variants != aug.eda(text, n_aug=8, alpha=0.2, seed=2)
    assert len(variants) == len(set(variants)) == 8 and text not in variants
    assert all("not" in v.split() for v in variants)
    assert any("beneficial" in v or "rapidly" in v or "fail" in v for v in variants)


def test_edits():
    rng = np.random.default_rng(0)
    table = {"good": ("fine",), "cheap": ("inexpensive",)}
    assert aug.synonym_replacement(["Good", "and", "cheap."], 2, table, rng) == [
        "Fine",
        "and",
        "inexpensive.",
    ]
    inserted = aug.random_insertion(["good", "phone"], 1, table, rng)
    assert sorted(inserted) == ["fine", "good", "phone"]
    assert sorted(aug.random_swap(["a", "b", "c"], 1, rng)) == ["a", "b", "c"]
    assert aug.random_deletion(["not", "x", "y"], 0.99, rng) == ["not"]
    assert len(aug.random_deletion(["x", "y"], 0.99, rng)) == 1  # never empty


def test_augment_keeps_labels(wordnet):
    texts, y = aug.augment(["good battery", "awful battery"], np.array([1, 0]), n_aug=2, seed=0)
    assert texts[:2] == ["good battery", "awful battery"] and list(y[:2]) == [1, 0]
    assert len(texts) == len(y) > 2
    for text, label in zip(texts[2:], y[2:], strict=True):
        assert label == (1 if ("good" in text or "beneficial" in text) else 0)


def test_augmented_texts_never_reach_validation_folds(wordnet, reviews, monkeypatch):
    texts, labels = reviews
    y = np.array([1 if lab == "positive" else 0 for lab in labels])
    seen: list[list[str]] = []
    real = aug.augment

    def recording(fold_texts, *args, **kwargs):
        out = real(fold_texts, *args, **kwargs)
        seen.append(out[0])
        return out

    monkeypatch.setattr(aug, "augment", recording)
    folds = folds_for(y, 3, 0)
    result = cross_validate(lambda: aug.Augmented(strategy="tfidf", n_aug=2), texts, y, 2, folds, "eda")
    assert len(seen) == len(folds)
    for (train, val), fitted_on in zip(folds, seen, strict=True):
        val_texts = {texts[i] for i in val}
        assert val_texts.isdisjoint(fitted_on)
        assert len(fitted_on) > len(train)
    assert result.scores.accuracy.value > 0.7


def test_augmented_saves_as_the_wrapped_strategy(wordnet, reviews, tmp_path):
    texts, labels = reviews
    y = np.array([1 if lab == "positive" else 0 for lab in labels])
    model = aug.Augmented(strategy="tfidf", n_aug=2).fit(texts, y)
    model.save(tmp_path / "s")
    loaded = TfidfLogReg.load(tmp_path / "s")
    np.testing.assert_allclose(loaded.predict_proba(texts[:4]), model.predict_proba(texts[:4]), atol=1e-5)
    assert "EDA x2" in model.describe()


def test_augmented_validates_settings(wordnet):
    with pytest.raises(Exception, match="unknown augmentation"):
        aug.Augmented(strategy="tfidf", method="backtranslate")
    with pytest.raises(Exception, match="n_aug"):
        aug.Augmented(strategy="tfidf", n_aug=0)


@REAL_WORDNET
def test_real_wordnet_synonyms(monkeypatch):
    monkeypatch.delenv(aug.WORDNET_ENV, raising=False)
    table = aug.synonyms()
    assert "beneficial" in table["good"]
    assert "terrible" in table["awful"]
    assert len(table) > 100_000


def test_train_with_augment_saves_a_plain_model(wordnet, reviews_csv, tmp_path):
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import load_labelled
    from fewlabel.inference.loading import load_model
    from fewlabel.training import train

    config = TrainConfig(strategy="tfidf", model="minilm", folds=3, augment="eda", diagnostics=False)
    result = train(load_labelled(reviews_csv), tmp_path / "m", config)
    assert "EDA" in result.results["tfidf"].description
    model = load_model(tmp_path / "m")
    assert isinstance(model.strategy, TfidfLogReg)
    assert model.manifest.config["augment"] == "eda"
    with pytest.raises(Exception, match="augment must be eda"):
        TrainConfig(augment="mixup")
