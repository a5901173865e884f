"""fewlabel: the most accurate text classifier a few hundred labels allow, with an honest estimate.

The public API is imported lazily so that ``import fewlabel`` (and ``fewlabel --help``) stays instant:
PyTorch and Transformers load only when a strategy that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "LabelledTexts",
    "MultiLabelledTexts",
    "load_labelled",
    "TrainConfig",
    "train",
    "train_multilabel",
    "load_model",
    "FewlabelClassifier",
    "FewlabelError",
    "DataError",
    "ModelDirError",
]

_LAZY = {
    "LabelledTexts": "fewlabel.data.labelled",
    "load_labelled": "fewlabel.data.labelled",
    "TrainConfig": "fewlabel.config",
    "train": "fewlabel.training",
    "MultiLabelledTexts": "fewlabel.data.multilabel",
    "train_multilabel": "fewlabel.multilabel",
    "load_model": "fewlabel.inference.loading",
    "FewlabelClassifier": "fewlabel.estimator",
    "FewlabelError": "fewlabel.errors",
    "DataError": "fewlabel.errors",
    "ModelDirError": "fewlabel.errors",
}

if TYPE_CHECKING:
    from fewlabel.config import TrainConfig
    from fewlabel.data.labelled import LabelledTexts, load_labelled
    from fewlabel.data.multilabel import MultiLabelledTexts
    from fewlabel.errors import DataError, FewlabelError, ModelDirError
    from fewlabel.estimator import FewlabelClassifier
    from fewlabel.inference.loading import load_model
    from fewlabel.multilabel import train_multilabel
    from fewlabel.training import train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fewlabel' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The public API only, lazy names included, so that dir() and completion show it unimported (and not
    # this module's own helpers: annotations, Any, TYPE_CHECKING).
    return sorted(__all__)
