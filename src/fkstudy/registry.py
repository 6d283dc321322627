"""Registries: one per kind of method, the single place a method is declared.

An `Entry` names a method and carries everything the rest of the study derives from it: the function
that computes it (imported lazily, so listing methods never imports TensorFlow or torch), its params
section (a `schema.Section` model: params.yaml's `<section>.<name>` is validated against it), a
one-line description (the report's method table), the framework and where its weights come from.
Stage argument checks, the params schema, the lists dvc.yaml iterates and the report all read the
registry; `tests/unit/test_registries.py` checks params.yaml and dvc.yaml against it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .errors import StudyError
from .schema import Section


class UnknownMethodError(StudyError, KeyError):
    """A method name that no registry entry has."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    name: str
    function: str                 # "package.module:function", imported on first use
    params: type[Section]         # the schema of its params.yaml section
    description: str              # one line, used by the report
    framework: str                # scikit-learn | gensim | transformers | tensorflow | keras | torch | ...
    weights: str                  # where its weights come from ("fitted on train", "ImageNet (...)", ...)
    kind: str = ""                # a registry-specific group (e.g. image: "classical" | "deep")
    extra: Mapping[str, Any] = field(default_factory=dict)

    def load(self) -> Callable:
        return resolve(self.function)


def resolve(ref: str) -> Callable:
    """The object a "package.module:attribute" reference names, its module imported now (not before)."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"{ref!r} is not a 'package.module:attribute' reference")
    return getattr(importlib.import_module(module), attr)


@dataclass
class Context:
    """What an extractor may use besides its inputs and params.

    ids       the catalog id of each input row (same order as the inputs)
    fit_ids   the ids a learned step (vocabulary, idf, Word2Vec, codebook) may be fitted on: the train
              split; None = every row (`text_features.fit_on: all`, never for a supervised stage)
    weights   the pretrained-weights policy (fkstudy.image.weights.WeightsPolicy) for pretrained models
    timings   wall-clock figures the extractor adds (reports/timings only: never in metrics or meta)
    arrays    side arrays the extractor adds, one row per input, saved beside X in the feature file (VGG16's
              block-4 `activations` for the fine_tune stage)
    """

    ids: Sequence[str]
    fit_ids: frozenset | None = None
    seed: int = 0
    n_jobs: int = 1
    weights: Any = None
    timings: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def fit_mask(self) -> np.ndarray | None:
        """Boolean mask of the rows a learned step may see (None = all)."""
        if self.fit_ids is None:
            return None
        return np.fromiter((i in self.fit_ids for i in self.ids), dtype=bool, count=len(self.ids))


class Registry(Mapping[str, Entry]):
    """An ordered, read-only name -> Entry map."""

    def __init__(self, what: str, entries: list[Entry]):
        self.what = what
        self._entries: dict[str, Entry] = {}
        for e in entries:
            if e.name in self._entries:
                raise ValueError(f"{what} registry: {e.name!r} registered twice")
            self._entries[e.name] = e

    def __getitem__(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownMethodError(f"unknown {self.what} {name!r}; registered: {list(self._entries)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self, kind: str | None = None) -> tuple[str, ...]:
        return tuple(n for n, e in self._entries.items() if kind is None or e.kind == kind)

    def check(self, name: str, kind: str | None = None) -> Entry:
        """The entry of `name`, refusing one of another kind."""
        entry = self[name]
        if kind is not None and entry.kind != kind:
            raise UnknownMethodError(f"{name!r} is a {entry.kind or 'other'} {self.what}, not {kind}; "
                                     f"{kind}: {list(self.names(kind))}")
        return entry
