"""What single- and multi-label loading share: the report of what loading did, text cleaning,
the de-duplication key, and the limits on text length."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

# Texts are cut at this many characters when read: far beyond any encoder's window (a few thousand
# characters), but it bounds memory if a file holds a stray megabyte-long cell.
MAX_TEXT_CHARS = 100_000
# A text above this many words is "long": an encoder with a 256-token window sees only its start.
LONG_TEXT_WORDS = 200


@dataclass
class DataReport:
    """What loading did to the data: counts and plain-language warnings."""

    rows_read: int = 0
    rows_used: int = 0
    duplicates_merged: int = 0
    conflicting_rows_removed: list[int] = field(default_factory=list)
    empty_rows_skipped: list[int] = field(default_factory=list)
    long_texts: int = 0
    cut_texts: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "rows_used": self.rows_used,
            "duplicates_merged": self.duplicates_merged,
            "conflicting_rows_removed": len(self.conflicting_rows_removed),
            "empty_rows_skipped": len(self.empty_rows_skipped),
            "long_texts": self.long_texts,
            "cut_texts": self.cut_texts,
            "warnings": list(self.warnings),
        }

    def note_lengths(self, texts: Sequence[str]) -> None:
        """Count the long texts and warn about them and about texts cut at MAX_TEXT_CHARS."""
        self.long_texts = sum(1 for t in texts if len(t.split()) > LONG_TEXT_WORDS)
        if self.long_texts:
            self.warnings.append(
                f"{self.long_texts} text(s) are longer than {LONG_TEXT_WORDS} words; embedding strategies "
                "read only the start of each (about 256 tokens with minilm, 384 with mpnet, 2,048 with "
                "embeddinggemma), TF-IDF reads them whole."
            )
        if self.cut_texts:
            self.warnings.append(
                f"{self.cut_texts} text(s) longer than {MAX_TEXT_CHARS:,} characters were cut."
            )


def clean_text(text: str) -> str:
    return text.strip()


def dedupe_key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def rows_list(rows: Sequence[int], limit: int = 8) -> str:
    shown = ", ".join(str(r) for r in rows[:limit])
    return shown + (f" and {len(rows) - limit} more" if len(rows) > limit else "")
