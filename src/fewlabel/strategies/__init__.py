"""Strategies, registered by name. Adding one means one new module and one line here."""

from __future__ import annotations

import difflib
import importlib

from fewlabel.errors import FewlabelError
from fewlabel.strategies.base import Strategy

REGISTRY: dict[str, str] = {
    "tfidf": "fewlabel.strategies.tfidf:TfidfLogReg",
    "embed": "fewlabel.strategies.embed:EmbeddingLogReg",
    "ensemble": "fewlabel.strategies.ensemble:EmbedTfidfEnsemble",
    "finetune": "fewlabel.strategies.finetune:FineTunedEncoder",
    "setfit": "fewlabel.strategies.finetune:ContrastiveEncoder",
}


def get_strategy_class(name: str) -> type[Strategy]:
    """The strategy class registered as ``name`` (imported only now, so unused ones cost nothing)."""
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise FewlabelError(f"unknown strategy {name!r}; choose from {', '.join(REGISTRY)}.{hint}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_strategy(name: str, **params) -> Strategy:
    return get_strategy_class(name)(**params)


__all__ = ["REGISTRY", "Strategy", "get_strategy_class", "make_strategy"]
