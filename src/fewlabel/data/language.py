"""Which languages the training texts are in, so an English-only backbone is not used on French reviews
without a word said.

Detection is py3langid's (a maintained fork of langid.py, BSD-3): its naive Bayes model over byte
n-grams (97 languages) ships inside its wheel and loads with ``allow_pickle=False``; nothing is
downloaded. It takes about 1 s to load once and about 0.1 ms per short text here; on 25 review
sentences in German, French, Dutch, English and Spanish it named 24 right (the miss was an English
title in the Spanish sample). One text of three words is often misread, so the verdict is over a
sample of texts and minor languages under ``MIN_SHARE`` are not reported.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# How many texts to read: enough for shares to within a few points; a fixed-seed sample of larger sets.
SAMPLE = 600
# Texts shorter than this (in characters) say too little to be identified and are not counted.
MIN_CHARS = 20
# A language under this share of the sampled texts is noise (names, quotes, misreads of short texts).
MIN_SHARE = 0.05

NAMES = {
    "ar": "Arabic", "bg": "Bulgarian", "ca": "Catalan", "cs": "Czech", "da": "Danish", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "fa": "Persian", "fi": "Finnish",
    "fr": "French", "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "hu": "Hungarian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "lt": "Lithuanian", "lv": "Latvian", "ms": "Malay",
    "nb": "Norwegian", "nl": "Dutch", "no": "Norwegian", "pl": "Polish", "pt": "Portuguese",
    "ro": "Romanian", "ru": "Russian", "sk": "Slovak", "sl": "Slovenian", "sr": "Serbian", "sv": "Swedish",
    "th": "Thai", "tr": "Turkish", "uk": "Ukrainian", "vi": "Vietnamese", "zh": "Chinese",
}  # fmt: skip


def language_name(code: str) -> str:
    return NAMES.get(code, code)


@dataclass(frozen=True)
class Languages:
    """Languages of a sample of texts: ISO 639-1 code -> number of sampled texts, most common first."""

    counts: dict[str, int] = field(default_factory=dict)
    sampled: int = 0

    def share(self, code: str) -> float:
        return self.counts.get(code, 0) / self.sampled if self.sampled else 0.0

    @property
    def main(self) -> list[str]:
        """Languages holding at least ``MIN_SHARE`` of the sampled texts, most common first."""
        return [code for code in self.counts if self.share(code) >= MIN_SHARE]

    @property
    def non_english_share(self) -> float:
        return 1.0 - self.share("en") if self.sampled else 0.0

    def describe(self) -> str:
        """``French 58%, Dutch 40%`` (languages under MIN_SHARE left out)."""
        return ", ".join(f"{language_name(c)} {self.share(c):.0%}" for c in self.main) or "unknown"

    def to_dict(self) -> dict[str, object]:
        return {"sampled": self.sampled, "shares": {c: round(self.share(c), 4) for c in self.main}}


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect_languages(texts: Sequence[str], sample: int = SAMPLE, seed: int = 0) -> Languages:
    """The languages of ``texts``, read from up to ``sample`` of them (a fixed-seed sample)."""
    usable = [t for t in texts if len(t.strip()) >= MIN_CHARS]
    if len(usable) > sample:
        usable = random.Random(seed).sample(usable, sample)
    if not usable:
        return Languages()
    identify = _identifier()
    counts = Counter(identify.classify(text)[0] for text in usable)
    return Languages(dict(counts.most_common()), len(usable))
