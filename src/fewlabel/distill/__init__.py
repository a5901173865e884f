"""``distill``: a small student model trained on a teacher model's probabilities over unlabelled texts.

Teams deploy small models (TF-IDF, frozen ``minilm`` embeddings, fine-tuned ``minilm``) and usually
have far more unlabelled texts than labels. The student learns from the teacher's calibrated
probabilities on every unlabelled text (soft targets) and from the labelled rows (one-hot); it is
saved as an ordinary model directory, which ``predict`` and ``serve`` use unchanged.

The estimate never uses a row the student or the teacher trained on. The labelled rows are
cross-fitted: in each of K splits a teacher refitted without the split's held-out fold gives the
probabilities, a student learns from them and the other folds' labelled rows, and is scored on the
held-out fold. The unlabelled texts are split alongside, so the student's agreement with its teacher
is measured on texts it did not learn from either. Refitting the teacher is cheap for the strategies
fewlabel cross-validates (tfidf, embed, ensemble: embeddings are cached); a fine-tuned teacher is
refitted once, on one 80/20 split, when asked (``honest_teacher``), and otherwise the saved teacher,
which saw the held-out rows, gives the probabilities and a warning says the estimate may be
optimistic. A fine-tuned student is scored on one 80/20 split too: two fine-tuning runs, not K + 1.
docs/distill.md has the design and an example.
"""

from __future__ import annotations

from fewlabel.config import DEFAULT_STUDENT, STUDENTS, DistillConfig
from fewlabel.distill.run import DistillResult, distill

__all__ = ["DEFAULT_STUDENT", "STUDENTS", "DistillConfig", "DistillResult", "distill"]
