"""Self-training: balanced, confident pseudo-labels from the unlabelled pool only."""

from __future__ import annotations

import numpy as np
import pytest

from fewlabel.strategies.self_training import self_train
from fewlabel.strategies.tfidf import TfidfLogReg


def _split(reviews):
    texts, labels = reviews
    y = np.array([1 if lab == "positive" else 0 for lab in labels])
    return texts[:12], y[:12], texts[12:], y[12:]  # 6 + 6 labelled (the fixture alternates), 36 unlabelled


def test_pseudo_labels_are_balanced_capped_and_from_the_pool(reviews):
    texts, y, pool, pool_y = _split(reviews)
    result = self_train(TfidfLogReg, texts, y, pool, 2, threshold=0.5, rounds=3)
    assert result.added_per_round and all(n % 2 == 0 and n <= 12 for n in result.added_per_round)
    assert len(set(result.pseudo_index.tolist())) == len(result.pseudo_index) == sum(result.added_per_round)
    assert (
        np.bincount(result.pseudo_labels, minlength=2)[0] == np.bincount(result.pseudo_labels, minlength=2)[1]
    )
    assert (result.pseudo_labels == pool_y[result.pseudo_index]).mean() >= 0.75
    assert result.strategy.predict_proba(pool).shape == (len(pool), 2)


def test_nothing_confident_enough_adds_nothing(reviews):
    texts, y, pool, _ = _split(reviews)
    result = self_train(TfidfLogReg, texts, y, pool, 2, threshold=0.999)
    assert result.added_per_round == [0] and len(result.pseudo_index) == 0


def test_rejects_bad_settings(reviews):
    texts, y, pool, _ = _split(reviews)
    with pytest.raises(Exception, match="threshold"):
        self_train(TfidfLogReg, texts, y, pool, threshold=0.3)
    with pytest.raises(Exception, match="rounds"):
        self_train(TfidfLogReg, texts, y, pool, rounds=0)


# -- train --unlabelled -------------------------------------------------------------------------
UNLABELLED = [
    "Absolutely love it, works wonderfully and looks great.",
    "Awful, it stopped working within a week. Do not buy.",
    "Superb quality, I am very happy with this purchase.",
    "Broke immediately, cheap plastic, a total waste of money.",
    "Fantastic, highly recommend it to everyone.",
    "Terrible product, the worst I have owned.",
]


def test_unlabelled_file_leaves_out_empty_repeated_and_labelled_texts(write_csv, reviews, tmp_path):
    from fewlabel.data.labelled import LabelledTexts, load_unlabelled

    texts, labels = reviews
    labelled = LabelledTexts(texts, labels, list(range(2, 2 + len(texts))), "labelled.csv")
    rows = [[t] for t in UNLABELLED] + [[""], [UNLABELLED[0]], [f"  {texts[3]}  "]]
    path = write_csv(tmp_path / "pool.csv", ["text"], rows)
    pool = load_unlabelled(path, labelled=labelled)
    assert pool.texts == UNLABELLED
    assert (pool.rows, pool.empty, pool.repeated, pool.labelled) == (9, 1, 1, 1)
    assert "1 also in the labelled data" in pool.summary()


def test_unlabelled_file_errors_name_the_file_and_the_fix(write_csv, tmp_path):
    from fewlabel.data.labelled import load_unlabelled
    from fewlabel.errors import DataError

    path = write_csv(tmp_path / "pool.csv", ["words", "stars"], [[t, 5] for t in UNLABELLED])
    with pytest.raises(DataError, match=r"pool.csv.*--unlabelled-column"):
        load_unlabelled(path)
    assert len(load_unlabelled(path, "words").texts) == len(UNLABELLED)
    with pytest.raises(DataError, match=r"pool.csv: no column named 'body'.*'words'"):
        load_unlabelled(path, "body")
    empty = write_csv(tmp_path / "empty.csv", ["text"], [[""], ["  "]])
    with pytest.raises(DataError, match=r"empty.csv: no unlabelled text is left"):
        load_unlabelled(empty)


def test_train_with_unlabelled_self_trains_per_fold_and_saves_a_plain_model(reviews_csv, write_csv, tmp_path):
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import load_labelled, load_unlabelled
    from fewlabel.inference.loading import load_model
    from fewlabel.training import train

    data = load_labelled(reviews_csv)
    pool = load_unlabelled(
        write_csv(tmp_path / "pool.csv", ["text"], [[t] for t in UNLABELLED]), labelled=data
    )
    config = TrainConfig(strategy="tfidf", folds=3, diagnostics=False)
    result = train(data, tmp_path / "m", config, unlabelled=pool)
    assert "self-training on 6 unlabelled texts" in result.results["tfidf"].description
    assert any(note.startswith("Self-training on 6 unlabelled texts") for note in result.notes)
    assert result.unlabelled["texts"] == 6
    # The final model really was fitted on pseudo-labelled texts: they were counted, and words that
    # occur only in the unlabelled texts are in its vocabulary.
    added = result.unlabelled["pseudo_labels_in_final_model"]
    assert added == sum(result.unlabelled["added_per_round"]) > 0
    labelled_words = {w for text in data.texts for w in text.lower().replace(",", " ").split()}
    unlabelled_only = {
        w.strip(".,")
        for text in UNLABELLED
        for w in text.lower().split()
        if w.strip(".,") not in labelled_words
    }
    vocabulary = result.strategy.fitted.vectorizers_["word"].vocabulary_
    assert unlabelled_only & set(vocabulary)
    # Evaluation is on labelled rows only: one out-of-fold prediction per labelled text.
    assert len(result.evaluation.y) == len(data)
    model = load_model(tmp_path / "m")
    assert isinstance(model.strategy, TfidfLogReg)
    assert model.manifest.unlabelled["texts"] == 6
    assert model.manifest.strategy.params == TfidfLogReg().params | model.manifest.strategy.params
    with pytest.raises(Exception, match="augmentation or unlabelled"):
        train(data, None, TrainConfig(strategy="tfidf", folds=3, augment="eda"), unlabelled=pool)


def test_finetune_keeps_extra_texts_out_of_its_validation_split(reviews):
    from conftest import BACKBONE
    from fewlabel.encoders.backbones import resolve
    from fewlabel.finetuning import FineTuner, Recipe

    texts, labels = reviews
    y = np.array([1 if lab == "positive" else 0 for lab in labels])
    recipe = Recipe(epochs=1, max_tokens=32, linear_probe_init=False, max_restarts=0, device="cpu")
    location = resolve(BACKBONE).location
    plain = FineTuner(location, 2, recipe).fit(texts, y)
    extra_y = np.array([1, 0, 1, 0, 1, 0])
    with_extra = FineTuner(location, 2, recipe).fit(texts, y, extra_texts=UNLABELLED, extra_y=extra_y)
    assert with_extra.val_index == plain.val_index  # the same labelled rows validate both
    assert max(with_extra.val_index) < len(texts) and with_extra.n_extra == len(UNLABELLED)
    assert with_extra.n_train == plain.n_train + len(UNLABELLED)
    with pytest.raises(Exception, match="6 extra texts but 2 labels"):
        FineTuner(location, 2, recipe).fit(texts, y, extra_texts=UNLABELLED, extra_y=extra_y[:2])


def test_self_trained_slow_strategy_is_budgeted_for_two_fits(reviews):
    """A slow strategy self-trains in two fits: on the labelled texts, then with the unlabelled ones."""
    from fewlabel.strategies.finetune import FineTunedEncoder
    from fewlabel.strategies.self_training import estimated_seconds

    texts, _ = reviews
    one = FineTunedEncoder.estimated_seconds(texts, "minilm")
    both = FineTunedEncoder.estimated_seconds([*texts, *UNLABELLED], "minilm")
    assert estimated_seconds(FineTunedEncoder, texts, "minilm", UNLABELLED, rounds=1) == one + both
