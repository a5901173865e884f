"""Shared fixtures for the fewlabel test suite.

Environment first, before anything imports fewlabel or transformers: never touch the network, never
touch the user's cache (FEWLABEL_HOME is a fresh temporary directory for the whole session), no
progress bars.
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["FEWLABEL_PROGRESS"] = "0"
_SESSION_HOME = tempfile.mkdtemp(prefix="fewlabel-test-home-")
os.environ["FEWLABEL_HOME"] = _SESSION_HOME
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)  # also after --collect-only runs

import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKBONE = "minilm"  # always explicit: the default "best" may resolve to the large mpnet model
REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_CSV = REPO_ROOT / "src" / "fewlabel" / "demo" / "reviews.csv"

# A tiny, clearly separable sentiment set: 24 positive and 24 negative product reviews.
POSITIVE = [
    "I love this blender, it works perfectly.",
    "Excellent quality and fast delivery, very happy.",
    "Great headphones, the sound is amazing.",
    "Wonderful product, would buy again.",
    "The kettle is fantastic and boils quickly.",
    "Superb build quality, I am delighted.",
    "Really comfortable shoes, love them.",
    "Amazing value for the price, highly recommend.",
    "Works great and looks beautiful on my desk.",
    "Best vacuum I have ever owned, excellent suction.",
    "The jacket is warm, stylish and great.",
    "Fantastic battery life, very pleased.",
    "Lovely soft pillow, I sleep wonderfully now.",
    "Perfect fit and excellent material.",
    "Great camera, the pictures are stunning.",
    "My kids love this toy, wonderful gift.",
    "Brilliant coffee maker, tasty coffee every morning.",
    "Happy with this purchase, works perfectly.",
    "Excellent keyboard, typing feels great.",
    "Beautiful watch, I love it.",
    "Highly recommend this tent, sturdy and great.",
    "Superb sound and great bass, amazing speaker.",
    "The chair is comfortable and excellent for work.",
    "Fantastic printer, easy setup and perfect prints.",
]
NEGATIVE = [
    "Terrible blender, it broke after one day.",
    "Awful quality and slow delivery, very disappointed.",
    "The headphones stopped working, waste of money.",
    "Horrible product, never buying again.",
    "The kettle leaks and is useless.",
    "Cheap flimsy plastic, broke immediately.",
    "Uncomfortable shoes, they hurt my feet.",
    "Poor value, do not buy this junk.",
    "Stopped working after a week, awful.",
    "Worst vacuum ever, terrible suction.",
    "The jacket ripped, poor stitching, disappointed.",
    "Battery dies quickly, very disappointed.",
    "The pillow is lumpy and horrible.",
    "Bad fit and cheap material, returned it.",
    "Terrible camera, the pictures are blurry.",
    "The toy broke in minutes, waste of money.",
    "Awful coffee maker, it leaks everywhere.",
    "Unhappy with this purchase, broken on arrival.",
    "Useless keyboard, keys stick constantly.",
    "The watch stopped after two days, junk.",
    "The tent leaked in light rain, terrible.",
    "Distorted sound and no bass, awful speaker.",
    "The chair wobbles and broke, horrible.",
    "Poor printer, constant paper jams, disappointed.",
]
# Interleaved so that file order is not sorted by label.
REVIEWS: list[tuple[str, str]] = [
    pair for p, n in zip(POSITIVE, NEGATIVE, strict=True) for pair in ((p, "positive"), (n, "negative"))
]

# Unlabelled texts for prediction tests; unambiguous.
NEW_POSITIVE = ["Excellent blender, I love it, works great.", "Wonderful speaker with amazing sound."]
NEW_NEGATIVE = ["Terrible kettle, it broke and leaks, awful.", "Horrible shoes, poor quality, disappointed."]

# Three clearly separable topics for multi-class checks.
THREE_CLASS: dict[str, list[str]] = {
    "weather": [
        "It is raining heavily today.",
        "Sunny skies and warm temperatures expected.",
        "Snow will fall overnight in the mountains.",
        "A strong wind is blowing from the north.",
        "Thunderstorms are forecast for the afternoon.",
        "The fog should clear by noon.",
        "Cold and frosty morning with clear skies.",
        "Heavy rain and wind warnings tonight.",
        "Temperatures will drop below freezing.",
        "Humid weather with a chance of showers.",
    ],
    "sport": [
        "The striker scored two goals in the match.",
        "The team won the championship final.",
        "She ran the marathon in under three hours.",
        "The goalkeeper saved a penalty.",
        "Tennis players warmed up before the match.",
        "The coach praised the defence after the game.",
        "He hit a home run in the ninth inning.",
        "The cyclist won the mountain stage.",
        "The match ended in a draw after extra time.",
        "Fans cheered as the team scored.",
    ],
    "cooking": [
        "Chop the onions and fry them in butter.",
        "Bake the cake for forty minutes.",
        "Stir the sauce and add salt and pepper.",
        "Boil the pasta until tender.",
        "Whisk the eggs with sugar and flour.",
        "Roast the chicken with garlic and herbs.",
        "Simmer the soup for an hour.",
        "Knead the dough and let it rise.",
        "Grill the vegetables with olive oil.",
        "Season the fish and bake it in the oven.",
    ],
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test; run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _auto_without_small_data_setfit(request, monkeypatch):
    """Below 200 rows ``auto`` cross-validates setfit (one fine-tuning run a fold): minutes on the
    small fixtures most tests train on. Left out here, like finetune; tests marked
    ``small_data_setfit`` keep it (tests/test_small_data_setfit.py)."""
    if "small_data_setfit" not in request.keywords:
        from fewlabel import training

        monkeypatch.setattr(training, "SMALL_DATA_SLOW", ())


@pytest.fixture(scope="session", autouse=True)
def fewlabel_home():
    """The per-session FEWLABEL_HOME (set at import time above); removed at the end of the session."""
    home = Path(_SESSION_HOME)
    assert os.environ["FEWLABEL_HOME"] == str(home)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def _write_csv(path: Path, header: list[str], rows: list[list[object]], delimiter: str = ",") -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def write_csv():
    """write_csv(path, header, rows, delimiter=',') -> path, written with Python's csv module."""
    return _write_csv


@pytest.fixture
def write_jsonl():
    def write(path: Path, records: list[dict]) -> Path:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def reviews() -> tuple[list[str], list[str]]:
    """The tiny separable fixture set as (texts, labels)."""
    return [t for t, _ in REVIEWS], [lab for _, lab in REVIEWS]


@pytest.fixture(scope="session")
def three_class() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, items in THREE_CLASS.items():
        texts.extend(items)
        labels.extend([label] * len(items))
    return texts, labels


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory) -> Path:
    """The fixture set as a CSV file with an extra id column (session-wide; do not modify)."""
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    return _write_csv(path, ["id", "text", "label"], [[i, t, lab] for i, (t, lab) in enumerate(REVIEWS)])


@pytest.fixture(scope="session")
def tfidf_model_dir(tmp_path_factory, reviews_csv) -> Path:
    """A tfidf model trained on the fixture CSV and saved (session-wide; copy it before modifying)."""
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import load_labelled
    from fewlabel.training import train

    out = tmp_path_factory.mktemp("models") / "tfidf-model"
    data = load_labelled(reviews_csv)
    train(data, out, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3))
    return out


@pytest.fixture
def model_copy(tmp_path, tfidf_model_dir) -> Path:
    """A private copy of the session's tfidf model, safe to modify."""
    dest = tmp_path / "model"
    shutil.copytree(tfidf_model_dir, dest)
    return dest


def encode_labels(labels: list[str]) -> tuple[np.ndarray, list[str]]:
    """Class indices (classes sorted by name, as fewlabel orders them) and the class names."""
    classes = sorted(set(labels))
    return np.array([classes.index(label) for label in labels]), classes


@pytest.fixture(scope="session")
def demo_data():
    """The shipped demo set (440 synthetic reviews) as checked labelled texts."""
    from fewlabel.data.labelled import load_labelled

    return load_labelled(DEMO_CSV)


@pytest.fixture(scope="session")
def demo_tfidf_model(tmp_path_factory, demo_data) -> Path:
    """A tfidf model trained on the demo set (session-wide; copy it before modifying)."""
    from fewlabel.config import TrainConfig
    from fewlabel.training import train

    out = tmp_path_factory.mktemp("models") / "demo-tfidf"
    train(demo_data, out, TrainConfig(strategy="tfidf", model=BACKBONE, folds=3, diagnostics=False))
    return out


@pytest.fixture(scope="session")
def demo_embed_model(tmp_path_factory, demo_data) -> Path:
    """An embed/minilm model trained on the demo set (session-wide; copy it before modifying)."""
    from fewlabel.config import TrainConfig
    from fewlabel.training import train

    out = tmp_path_factory.mktemp("models") / "demo-embed"
    train(demo_data, out, TrainConfig(strategy="embed", model=BACKBONE, folds=3, diagnostics=False))
    return out


def assert_one_line_error(result, *fragments: str) -> None:
    """A CLI result that failed well: exit code 2, one 'Error:' line on stderr naming the fragments,
    and no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    message = result.stderr.strip()
    assert message.startswith("Error: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message


# A tiny multi-label set: every subset of three topics (the empty one too) in 5 wordings, 40 texts;
# each topic is on 20 texts and missing from 20, and a topic's words always mean it (separable).
TOPIC_WORDS = {
    "food": ["pasta", "recipe", "oven", "flavour", "dessert"],
    "sports": ["match", "goal", "team", "coach", "stadium"],
    "tech": ["laptop", "software", "battery", "screen", "keyboard"],
}
TOPIC_SETS = [(), ("food",), ("sports",), ("tech",), ("food", "sports"), ("food", "tech"), ("sports", "tech")]
TOPIC_SETS.append(("food", "sports", "tech"))


def multi_label_rows() -> list[tuple[str, str]]:
    """(text, labels joined by '|') for the multi-label fixture set."""
    rows = []
    for i in range(5):
        for subset in TOPIC_SETS:
            words = [f"the {TOPIC_WORDS[t][i]} and the {TOPIC_WORDS[t][(i + 2) % 5]}" for t in subset]
            text = f"Note {i}: " + ("; ".join(words) if words else f"nothing much happened on day {i}")
            rows.append((text, "|".join(subset)))
    return rows


@pytest.fixture
def multi_csv(tmp_path, write_csv) -> Path:
    """The multi-label fixture set as a CSV with columns text and labels."""
    return write_csv(tmp_path / "multi.csv", ["text", "labels"], [list(r) for r in multi_label_rows()])


@pytest.fixture(scope="session")
def multi_model_dir(tmp_path_factory) -> Path:
    """A multi-label tfidf model trained on the multi-label fixture set (session-wide; do not modify)."""
    from fewlabel.config import TrainConfig
    from fewlabel.data.multilabel import MultiLabelledTexts
    from fewlabel.multilabel import train_multilabel

    rows = multi_label_rows()
    data = MultiLabelledTexts(
        [t for t, _ in rows], [sorted(filter(None, lab.split("|"))) for _, lab in rows], list(range(2, 42))
    )
    data.label_column = "labels"
    out = tmp_path_factory.mktemp("models") / "multi-tfidf"
    train_multilabel(data, out, TrainConfig(strategy="tfidf", model=BACKBONE, folds=4))
    return out
