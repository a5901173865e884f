"""``distill``: a student trained on a teacher's probabilities, its estimate honest, saved as any model is."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import conftest
from conftest import BACKBONE, NEW_NEGATIVE, NEW_POSITIVE
from fewlabel.cli.main import app
from fewlabel.config import TrainConfig
from fewlabel.data.labelled import LabelledTexts
from fewlabel.distill import distill
from fewlabel.distill.run import Teacher
from fewlabel.errors import FewlabelError, ModelDirError
from fewlabel.inference.loading import load_model
from fewlabel.model_dir.store import read_metrics
from fewlabel.strategies.tfidf import TfidfLogReg
from fewlabel.training import train

POSITIVE = ["great", "love", "excellent", "perfect", "happy", "wonderful", "sturdy", "lovely"]
NEGATIVE = ["awful", "broke", "terrible", "refund", "poor", "useless", "flimsy", "leaks"]
THINGS = ["kettle", "lamp", "phone", "chair", "blender", "jacket", "printer", "camera", "desk", "toaster"]
ENV = {"COLUMNS": "200", "FEWLABEL_PROGRESS": "0"}


def reviews(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` short synthetic reviews, half of each class; one in five carries a word of the other."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        own, other = (POSITIVE, NEGATIVE) if i % 2 == 0 else (NEGATIVE, POSITIVE)
        words = [*rng.choice(own, 2, replace=False), rng.choice(other if rng.random() < 0.2 else own)]
        texts.append(f"review {seed}-{i}: the {rng.choice(THINGS)} is {words[0]}, {words[1]} and {words[2]}")
        labels.append("positive" if i % 2 == 0 else "negative")
    return texts, labels


@pytest.fixture(scope="module")
def labelled() -> LabelledTexts:
    return LabelledTexts.from_lists(*reviews(60, seed=1))


@pytest.fixture(scope="module")
def pool() -> list[str]:
    return reviews(60, seed=2)[0]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, labelled) -> Path:
    out = tmp_path_factory.mktemp("teacher") / "tfidf"
    train(labelled, out, TrainConfig(strategy="tfidf", folds=3, diagnostics=False))
    return out


def test_student_saves_loads_and_predicts_like_any_model(teacher, pool, labelled, tmp_path):
    result = distill(teacher, pool, labelled, tmp_path / "student", student="tfidf", folds=3)
    model = load_model(tmp_path / "student")
    predicted, _ = model.predict(["the lamp is great, lovely and perfect", "the desk is awful and broke"])
    assert predicted == ["positive", "negative"]
    distilled = model.manifest.distilled
    assert distilled is not None and distilled.student == "tfidf" and distilled.unlabelled_texts == 60
    assert distilled.teacher.digest == load_model(teacher).manifest.digest
    assert distilled.teacher.strategy == "tfidf" and distilled.teacher.estimate is not None
    metrics = read_metrics(tmp_path / "student")
    record = metrics.distillation
    assert record is not None and (record.protocol, record.splits, record.teacher_refitted) == (
        "cross-fit",
        3,
        True,
    )
    assert metrics.estimate.n == 60 and metrics.expected_accuracy == result.expected
    assert result.expected.value >= 0.8 and result.agreement.value >= 0.8 and result.agreement_texts == 60
    assert "neither its student nor its teacher" in result.expected.method
    assert "**Distilled**: Distilled from a tfidf" in (tmp_path / "student" / "README.md").read_text()
    assert (
        "Agreement with the teacher on 60 unlabelled texts"
        in (tmp_path / "student" / "report.html").read_text()
    )


def test_a_strategy_that_cannot_learn_probabilities_says_so(pool):
    from fewlabel.strategies import make_strategy

    with pytest.raises(FewlabelError, match="'ensemble' cannot learn from class probabilities"):
        make_strategy("ensemble").fit_soft([], np.array([], dtype=int), 2, pool[:2], np.full((2, 2), 0.5))


def test_each_split_refits_the_teacher_and_the_student_without_its_held_out_rows(
    teacher, pool, labelled, monkeypatch
):
    fitted: dict[str, list[set[str]]] = {"teacher": [], "student": []}
    hard, soft = TfidfLogReg._fit, TfidfLogReg._fit_soft

    def fit(self, texts, y):
        fitted["teacher"].append(set(texts))
        return hard(self, texts, y)

    def fit_soft(self, texts, targets, n_labelled):
        fitted["student"].append(set(texts))
        return soft(self, texts, targets, n_labelled)

    monkeypatch.setattr(TfidfLogReg, "_fit", fit)
    monkeypatch.setattr(TfidfLogReg, "_fit_soft", fit_soft)
    result = distill(teacher, pool, labelled, student="tfidf", folds=3)
    everything = set(labelled.texts)
    assert len(fitted["teacher"]) == 3 and len(fitted["student"]) == 4  # 3 splits, then the final student
    held = [everything - texts for texts in fitted["teacher"]]
    assert sorted(len(h) for h in held) == [20, 20, 20] and set().union(*held) == everything
    for rows, student in zip(held, fitted["student"][:3], strict=True):
        assert not rows & student and everything - rows <= student
    assert fitted["student"][-1] == everything | set(pool)  # the saved student learned from all
    assert len(result.evaluation.y) == 60  # every labelled row scored once, held out


def random_words(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Texts of random made-up words with random labels: nothing to learn, only rows to memorise."""
    rng = np.random.default_rng(seed)
    letters = list("abcdefghijklmnopqrstuvwxyz")
    texts = [" ".join("".join(rng.choice(letters, 6)) for _ in range(8)) for _ in range(n)]
    return texts, ["yes" if i % 2 else "no" for i in range(n)]


def test_no_label_leaks_through_the_teacher_into_the_estimate(tmp_path, monkeypatch):
    """Each unlabelled text is a copy of a labelled one. A teacher that saw the held-out rows would
    hand their labels to the student through the copies (as the second run shows); refitted per
    split, it cannot, and the estimate stays at chance, where it belongs."""
    texts, labels = random_words(60, seed=3)
    data = LabelledTexts.from_lists(texts, labels)
    train(data, tmp_path / "memoriser", TrainConfig(strategy="tfidf", folds=3, diagnostics=False))
    copies = [f"{text} again" for text in texts]
    honest = distill(tmp_path / "memoriser", copies, data, student="tfidf", folds=3)
    assert honest.expected.value < 0.65
    monkeypatch.setattr(Teacher, "slow", property(lambda self: True))  # as a fine-tuned teacher: not refitted
    leaky = distill(tmp_path / "memoriser", copies, data, student="tfidf", folds=3)
    assert leaky.expected.value >= honest.expected.value + 0.3 and not leaky.teacher_refitted
    assert any("may be optimistic" in warning for warning in leaky.warnings)


def test_a_slow_teacher_is_refitted_once_when_asked(teacher, pool, labelled, monkeypatch):
    monkeypatch.setattr(Teacher, "slow", property(lambda self: True))
    result = distill(teacher, pool, labelled, student="tfidf", folds=3, honest_teacher=True)
    assert result.splits == 1 and result.teacher_refitted and result.evaluation.protocol == "holdout"
    assert len(result.evaluation.y) == 12  # one fifth of the 60 labelled rows
    assert not any("optimistic" in warning for warning in result.warnings)


def test_soft_targets_are_learned_not_just_their_most_probable_class(pool):
    texts = pool[:40]
    leaning = np.tile([0.7, 0.3], (len(texts), 1))  # most probable: always the first class
    student = TfidfLogReg(class_weight=None).fit_soft([], np.array([], dtype=int), 2, texts, leaning)
    assert student.predict_proba(texts)[:, 0] == pytest.approx(0.7, abs=0.05)
    # Balanced class weights weigh each class by its share of the probability mass, as by its count.
    balanced = TfidfLogReg().fit_soft([], np.array([], dtype=int), 2, texts, leaning)
    assert balanced.predict_proba(texts)[:, 0] == pytest.approx(0.5, abs=0.05)


def test_fine_tuning_targets_one_hot_labels_and_the_extra_texts_probabilities():
    from fewlabel.finetuning import FineTuner, Recipe

    tuner = FineTuner("unused", 3, Recipe())
    proba = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    texts, y, soft = tuner._with_extra(["a", "b"], np.array([2, 0]), ["c", "d"], proba)
    assert texts == ["a", "b", "c", "d"] and y.tolist() == [2, 0, 1, 0]
    assert soft is not None and np.allclose(soft, [[0, 0, 1], [1, 0, 0], *proba])
    assert tuner._with_extra(["a"], np.array([1]), ["c"], np.array([2]))[2] is None  # labels: no soft targets


def test_a_student_of_the_teachers_probabilities_alone_answers_as_the_teacher(teacher, pool):
    model = load_model(teacher)
    proba = model.predict_proba(pool)
    student = TfidfLogReg().fit_soft([], np.array([], dtype=int), 2, pool, proba)
    agreement = (student.predict_proba(pool).argmax(axis=1) == proba.argmax(axis=1)).mean()
    assert agreement >= 0.95


def test_unlabelled_texts_also_in_the_labelled_data_are_left_out_with_a_note(teacher, pool, labelled):
    given = [*pool[:20], *labelled.texts[:3]]
    result = distill(teacher, given, labelled, student="tfidf", folds=3)
    assert result.unlabelled.texts == pool[:20] and result.unlabelled.labelled == 3
    assert any(
        note.startswith("3 unlabelled text(s) also in the labelled data left out") for note in result.notes
    )


def test_a_multi_label_teacher_is_refused(multi_model_dir, pool, labelled):
    with pytest.raises(FewlabelError, match="multi-label model"):
        distill(multi_model_dir, pool, labelled, student="tfidf")


def test_a_teacher_of_other_classes_is_refused(teacher, pool):
    texts, labels = reviews(30, seed=4)
    other = LabelledTexts.from_lists(texts, ["good" if label == "positive" else "bad" for label in labels])
    with pytest.raises(
        FewlabelError, match=r"the teacher answers \['negative', 'positive'\].*classes \['bad', 'good'\]"
    ):
        distill(teacher, pool, other, student="tfidf")


def test_a_bad_output_is_refused_before_the_teacher_is_read(pool, labelled, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ModelDirError, match="not a fewlabel model"):
        distill(tmp_path / "no-such-teacher", pool, labelled, taken, student="tfidf")
    with pytest.raises(FewlabelError, match="unknown student 'svm'"):
        distill(tmp_path / "no-such-teacher", pool, labelled, student="svm")


def test_an_embed_student_on_minilm(tfidf_model_dir, reviews, tmp_path):
    data = LabelledTexts.from_lists(*reviews)
    texts = [*NEW_POSITIVE, *NEW_NEGATIVE, "Lovely lamp, great light.", "The lamp broke, awful."]
    result = distill(tfidf_model_dir, texts, data, tmp_path / "s", student="embed", model=BACKBONE, folds=3)
    model = load_model(tmp_path / "s")
    assert model.manifest.strategy.name == "embed" and model.backbone_ref.startswith("minilm@sha256:")
    assert model.predict(NEW_POSITIVE + NEW_NEGATIVE)[0] == ["positive"] * 2 + ["negative"] * 2
    assert result.expected.value >= 0.8


@pytest.mark.slow  # two fine-tuning runs: 20-100 s on a 2-core CPU
def test_a_finetuned_student_learns_soft_targets_on_one_split(
    tfidf_model_dir, reviews, tmp_path, monkeypatch
):
    import fewlabel.finetuning as finetuning

    targets = []
    original = finetuning.TrainingRun.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        targets.append(self.soft)

    monkeypatch.setattr(finetuning.TrainingRun, "__init__", init)
    data = LabelledTexts.from_lists(*reviews)
    texts = [*NEW_POSITIVE, *NEW_NEGATIVE]
    fast = {"epochs": 2, "max_tokens": 32, "freeze_layers": 3}
    result = distill(tfidf_model_dir, texts, data, tmp_path / "s", student="finetune", student_params=fast)
    assert result.splits == 1 and result.evaluation.protocol == "holdout" and result.teacher_refitted
    assert targets and all(t is not None and t.shape[1] == 2 for t in targets)
    assert result.strategy.report_.n_extra == 4  # the unlabelled texts train; labelled rows validate
    assert load_model(tmp_path / "s").predict(texts)[0] == ["positive"] * 2 + ["negative"] * 2
    assert read_metrics(tmp_path / "s").runs["finetune"].n_extra == 4


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_the_command_runs_end_to_end(teacher, pool, labelled, tmp_path):
    runner = CliRunner()
    data = _csv(
        tmp_path / "data.csv",
        ["text", "label"],
        [list(r) for r in zip(labelled.texts, labelled.labels, strict=True)],
    )
    texts = _csv(tmp_path / "pool.csv", ["text"], [[t] for t in pool])
    args = [
        "distill",
        teacher,
        texts,
        "--labelled",
        data,
        "-o",
        tmp_path / "s",
        "--folds",
        "3",
    ]  # the default student: tfidf (fastest; BENCHMARKS.md)
    result = runner.invoke(app, [str(a) for a in args], env=ENV)
    assert result.exit_code == 0, result.output
    for fragment in (
        "Teacher: tfidf",
        "Expected accuracy on new texts",
        "Agreement with the teacher on 60",
        "Model saved to",
    ):
        assert fragment in result.stdout, result.stdout
    predicted = runner.invoke(app, ["predict", str(tmp_path / "s"), str(texts)], env=ENV)
    assert predicted.exit_code == 0 and len(predicted.stdout.splitlines()) == 61
    manifest = json.loads((tmp_path / "s" / "fewlabel.json").read_text(encoding="utf-8"))
    assert manifest["distilled"]["teacher"]["strategy"] == "tfidf"
    assert manifest["distilled"]["student"] == "tfidf"


def test_the_command_refuses_a_bad_output_in_one_line(labelled, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    args = ["distill", tmp_path / "none", tmp_path / "none.csv", "--labelled", tmp_path / "none.csv"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "-o", tmp_path / "taken"]], env=ENV)
    conftest.assert_one_line_error(result, "not a fewlabel model")
