"""The heads registry and the head params: light (no scikit-learn import), so that loading params.yaml, which
every stage does first, does not pay for scikit-learn. The fit functions are fkstudy.train.heads.

A head's params (`HeadParams`, the `head:` block of text_classifier / multiseed / fusion / label_audit):
  type      a registered head: "logreg" | "mlp" | "linear_svm" (HEADS)
  C         inverse regularisation strengths; more than one -> chosen on val (logreg / svm)
  hidden    MLP hidden layer sizes, e.g. [256]
  alpha     MLP L2 penalty;  lr: MLP Adam learning rate;  batch_size: MLP minibatch
  max_iter  logreg / svm solver iterations, or MLP max epochs
  patience  MLP early stopping: epochs without a better val loss
  scale     "standard" (StandardScaler fitted on train) | "l2" (row normalisation, stateless) | "none"
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..registry import Entry, Registry
from ..schema import Section


class _NoParams(Section):
    """Heads take their settings from HeadParams (one block for every head type)."""


HEADS = Registry("head", [
    Entry("logreg", "fkstudy.train.heads:fit_linear", _NoParams,
          "Logistic regression (lbfgs), C chosen on val.", "scikit-learn", "fitted on train"),
    Entry("mlp", "fkstudy.train.heads:fit_mlp", _NoParams,
          "MLP (one hidden layer, Adam), epochs stopped on val loss, best epoch kept.", "scikit-learn",
          "fitted on train"),
    Entry("linear_svm", "fkstudy.train.heads:fit_linear", _NoParams,
          "Linear SVM with sigmoid-calibrated probabilities (3-fold on train), C chosen on val.", "scikit-learn",
          "fitted on train"),
])


class HeadParams(Section):
    type: Literal[HEADS.names()]
    scale: Literal["standard", "l2", "none"]
    C: list[Annotated[float, Field(ge=1e-6, le=1e6)]] = Field(min_length=1)
    hidden: list[Annotated[int, Field(ge=1, le=4096)]]
    alpha: float = Field(ge=0.0, le=100.0)
    lr: float = Field(ge=1e-6, le=1.0)
    batch_size: int = Field(ge=1, le=4096)
    max_iter: int = Field(ge=1, le=100_000)
    patience: int = Field(ge=1, le=1000)
