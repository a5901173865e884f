"""Text augmentation for training folds: EDA (Wei & Zou, 2019) with synonyms from WordNet 3.0.

EDA makes ``n_aug`` variants of each training text by four cheap edits: synonym replacement,
random insertion of a synonym, random swap of two words, random deletion. Variants carry the label
of their original. :class:`Augmented` wraps any strategy so that augmentation happens inside
``fit`` only: in cross-validation each training fold is augmented, and augmented texts never reach a
validation fold (nor prediction).

WordNet comes from the WordNet 3.0 database files (``data.noun``, ``data.verb``, ``data.adj``,
``data.adv``), read directly: Debian and Ubuntu ship them in the ``wordnet-base`` package
(``/usr/share/wordnet``); set ``FEWLABEL_WORDNET`` to use another directory holding them.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fewlabel.errors import FewlabelError
from fewlabel.strategies.wrapper import Wrapper

WORDNET_ENV = "FEWLABEL_WORDNET"
WORDNET_DIRS = ("/usr/share/wordnet", "/usr/share/wordnet/dict", "/usr/local/WordNet-3.0/dict")
WORDNET_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
METHODS = ("eda",)

# Words EDA leaves alone when replacing or inserting: function words have no useful synonyms.
STOPWORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
    "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further",
    "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his",
    "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my",
    "myself", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out",
    "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their",
    "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to",
    "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "yourself",
    "yourselves",
})  # fmt: skip
# Never deleted or replaced: dropping a negation flips the meaning a sentiment label depends on.
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "nor",
        "none",
        "nothing",
        "nobody",
        "nowhere",
        "neither",
        "cannot",
        "without",
        "n't",
    }
)
_WORD = re.compile(r"^(\W*)([A-Za-z][A-Za-z'-]*[A-Za-z]|[A-Za-z])(\W*)$")


class WordNetMissingError(FewlabelError):
    """The WordNet 3.0 data files are not installed."""


def wordnet_dir() -> Path:
    """The directory holding the WordNet 3.0 data files; raises with install instructions if none does."""
    configured = os.environ.get(WORDNET_ENV)
    places = [configured] if configured else list(WORDNET_DIRS)
    for place in places:
        if all((Path(place) / f).is_file() for f in WORDNET_FILES):
            return Path(place)
    where = f"{WORDNET_ENV}={configured}" if configured else ", ".join(WORDNET_DIRS)
    raise WordNetMissingError(
        f"EDA augmentation needs the WordNet 3.0 data files ({', '.join(WORDNET_FILES)}), found in none of "
        f"{where}. Install them with Debian's package: `apt-get install wordnet-base` (Ubuntu: the same), "
        f"or set {WORDNET_ENV} to a directory holding them."
    )


def wordnet_available() -> bool:
    try:
        wordnet_dir()
    except WordNetMissingError:
        return False
    return True


def read_synsets(path: Path) -> list[list[str]]:
    """The synsets of one WordNet ``data.*`` file, each as its lower-case words (spaces for ``_``)."""
    synsets = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(" "):  # the licence header: lines start with two spaces
                continue
            fields = line.split(" ", 4 + 2 * 255)
            try:
                count = int(fields[3], 16)  # w_cnt is two hexadecimal digits
            except (IndexError, ValueError):
                raise WordNetMissingError(
                    f"{path}: not a WordNet 3.0 data file (line {line[:40]!r})"
                ) from None
            words = []
            for k in range(count):
                word = fields[4 + 2 * k].lower()
                word = re.sub(r"\((a|p|ip)\)$", "", word)  # adjective position markers
                words.append(word.replace("_", " "))
            synsets.append(words)
    return synsets


def synonyms(directory: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Every WordNet word mapped to its synonyms (words sharing a synset with it), sorted.

    ``directory`` holds the WordNet data files; by default :func:`wordnet_dir` finds them.
    """
    return _synonyms(str(Path(directory) if directory else wordnet_dir()))


@functools.lru_cache(maxsize=2)  # reading the four files takes about a second; do it once per process
def _synonyms(directory: str) -> dict[str, tuple[str, ...]]:
    folder = Path(directory)
    found: dict[str, set[str]] = {}
    for name in WORDNET_FILES:
        for words in read_synsets(folder / name):
            for word in words:
                found.setdefault(word, set()).update(w for w in words if w != word)
    return {w: tuple(sorted(s)) for w, s in found.items() if s}


def _rng(text: str, seed: int) -> np.random.Generator:
    # Seeded by the text: the same text gets the same variants in every fold and run, so an embedding
    # cache serves them after the first time, and results do not depend on the order of fitting.
    digest = hashlib.sha256(f"{seed}\x1f{text}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _core(token: str) -> tuple[str, str, str] | None:
    match = _WORD.match(token)
    return (match.group(1), match.group(2), match.group(3)) if match else None


def _replaceable(token: str, table: dict[str, tuple[str, ...]]) -> bool:
    parts = _core(token)
    if parts is None:
        return False
    word = parts[1].lower()
    return word not in STOPWORDS and word not in NEGATIONS and word in table


def _synonym(token: str, table: dict[str, tuple[str, ...]], rng: np.random.Generator) -> str:
    before, word, after = _core(token)  # type: ignore[misc]  # only called on _replaceable tokens
    choice = table[word.lower()][int(rng.integers(len(table[word.lower()])))]
    if word[0].isupper():
        choice = choice[0].upper() + choice[1:]
    return before + choice + after


def synonym_replacement(tokens: list[str], n: int, table, rng) -> list[str]:
    out = list(tokens)
    positions = [i for i, t in enumerate(out) if _replaceable(t, table)]
    for i in rng.permutation(positions)[:n] if positions else []:
        out[int(i)] = _synonym(out[int(i)], table, rng)
    return out


def random_insertion(tokens: list[str], n: int, table, rng) -> list[str]:
    out = list(tokens)
    positions = [i for i, t in enumerate(tokens) if _replaceable(t, table)]
    if not positions:
        return out
    for _ in range(n):
        source = tokens[positions[int(rng.integers(len(positions)))]]
        _, word, _ = _core(source)  # type: ignore[misc]
        options = table[word.lower()]
        out.insert(int(rng.integers(len(out) + 1)), options[int(rng.integers(len(options)))])
    return out


def random_swap(tokens: list[str], n: int, rng) -> list[str]:
    out = list(tokens)
    if len(out) < 2:
        return out
    for _ in range(n):
        i, j = rng.choice(len(out), size=2, replace=False)
        out[i], out[j] = out[j], out[i]
    return out


def random_deletion(tokens: list[str], p: float, rng) -> list[str]:
    if len(tokens) <= 1:
        return list(tokens)
    keep = [t for t in tokens if ((_core(t) or ("", t, ""))[1].lower() in NEGATIONS) or rng.random() >= p]
    return keep or [tokens[int(rng.integers(len(tokens)))]]


def eda(text: str, n_aug: int = 4, alpha: float = 0.1, seed: int = 0, table=None) -> list[str]:
    """``n_aug`` EDA variants of ``text`` (distinct from it and from each other where possible).

    ``alpha`` is the share of words each edit touches (at least one). The four edits take turns,
    as in the paper's reference code; each variant applies one of them.
    """
    table = synonyms() if table is None else table
    tokens = text.split()
    if not tokens or n_aug < 1:
        return []
    rng = _rng(text, seed)
    n = max(1, int(alpha * len(tokens)))
    out: list[str] = []
    seen = {text}
    for attempt in range(4 * n_aug):
        kind = attempt % 4
        if kind == 0:
            new = synonym_replacement(tokens, n, table, rng)
        elif kind == 1:
            new = random_insertion(tokens, n, table, rng)
        elif kind == 2:
            new = random_swap(tokens, n, rng)
        else:
            new = random_deletion(tokens, alpha, rng)
        variant = " ".join(new)
        if variant not in seen:
            seen.add(variant)
            out.append(variant)
        if len(out) == n_aug:
            break
    return out


def augment(
    texts: Sequence[str],
    y: np.ndarray,
    method: str = "eda",
    n_aug: int = 4,
    alpha: float = 0.1,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """The texts followed by their variants, and the labels to match (each variant keeps its text's)."""
    if method not in METHODS:
        raise FewlabelError(f"unknown augmentation {method!r}; choose from {', '.join(METHODS)}")
    table = synonyms()
    new_texts, new_y = list(texts), list(np.asarray(y))
    for text, label in zip(texts, np.asarray(y), strict=True):
        variants = eda(text, n_aug, alpha, seed, table)
        new_texts.extend(variants)
        new_y.extend([label] * len(variants))
    return new_texts, np.asarray(new_y, dtype=np.int64)


class Augmented(Wrapper):
    """A strategy fitted on its training texts plus their augmented variants.

    Augmentation is a training-time device only: prediction, saving and loading are the wrapped
    strategy's own (a saved model holds the wrapped strategy, and loads without fewlabel.strategies.augment).
    """

    name = "augmented"
    defaults = {
        "strategy": "tfidf",  # the wrapped strategy
        "strategy_params": {},
        "method": "eda",
        "n_aug": 4,  # Wei & Zou suggest 4-16 variants per text for a few hundred texts
        "alpha": 0.1,  # share of words changed per edit, the paper's default
        "seed": 0,
    }

    def __init__(self, **params):
        super().__init__(**params)
        if self.params["method"] not in METHODS:
            raise FewlabelError(
                f"unknown augmentation {self.params['method']!r}; choose from {', '.join(METHODS)}"
            )
        if int(self.params["n_aug"]) < 1 or not 0 < float(self.params["alpha"]) < 1:
            raise FewlabelError("augmentation needs n_aug >= 1 and 0 < alpha < 1")
        wordnet_dir()  # fail now, with the fix, rather than inside the first fold

    def _fit(self, texts: list[str], y: np.ndarray) -> None:
        p = self.params
        more_texts, more_y = augment(
            texts, y, p["method"], int(p["n_aug"]), float(p["alpha"]), int(p["seed"])
        )
        self.inner_ = self.inner().fit(more_texts, more_y, self.n_classes_)

    def describe(self) -> str:
        p = self.params
        return f"{self.inner().describe()} + {p['method'].upper()} x{p['n_aug']} (alpha={p['alpha']:g})"
