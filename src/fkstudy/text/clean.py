"""Text cleaning: tokenize, lowercase, strip punctuation/digits, stopwords, lemmatize, stem.

Only NLTK's data-free parts (regexp tokenizer, Snowball stemmer) plus WordNet
(installed offline by scripts/setup.sh) are used; the stopword list is
scikit-learn's English list (NLTK's stopwords corpus cannot be downloaded here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import pandas as pd

from pydantic import Field

from ..errors import StudyError
from ..schema import Section

_TOKEN = re.compile(r"[a-z]+|\d+")
_SPACES = re.compile(r"\s+")


class CleanTextParams(Section):
    min_token_len: int = Field(ge=1, le=10)
    stopwords: Literal["sklearn", "none"]   # scikit-learn's English list (NLTK's corpus cannot be downloaded here)
    extra_stopwords: list[str]
    keep_digits: bool


def select_text(name: str, description: str, field: str) -> str:
    """The raw text a product is represented by: its name, its description, or both."""
    name, description = (name or "").strip(), (description or "").strip()
    if field == "name":
        text = name or description
    elif field == "description":
        text = description or name
    elif field == "both":
        text = f"{name}. {description}" if name and description else (name or description)
    else:
        raise ValueError(f"unknown text field {field!r} (name | description | both)")
    return _SPACES.sub(" ", text).strip()


def stopword_list(source: str, extra: list[str]) -> frozenset[str]:
    if source == "sklearn":
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        words = set(ENGLISH_STOP_WORDS)
    elif source == "none":
        words = set()
    else:
        raise ValueError(f"unknown stopword source {source!r}")
    return frozenset(words | {w.lower() for w in extra})


def tokenize(text: str, keep_digits: bool = False) -> list[str]:
    """Lowercase word tokens; punctuation is dropped, digits too unless keep_digits."""
    toks = _TOKEN.findall(text.lower())
    return toks if keep_digits else [t for t in toks if not t.isdigit()]


@lru_cache(maxsize=1)
def _lemmatizer():
    from nltk.stem import WordNetLemmatizer

    lem = WordNetLemmatizer()
    try:
        lem.lemmatize("tests")
    except LookupError as exc:  # WordNet missing: say how to install it offline
        raise StudyError("NLTK WordNet data not found: run `bash scripts/setup.sh` (installs Debian "
                           "wordnet-base + wordnet-sense-index into <venv>/nltk_data)") from exc
    return lem


@lru_cache(maxsize=1)
def _stemmer():
    from nltk.stem.snowball import SnowballStemmer

    return SnowballStemmer("english")


@lru_cache(maxsize=200_000)
def lemmatize(token: str) -> str:
    return _lemmatizer().lemmatize(token)


@lru_cache(maxsize=200_000)
def stem(token: str) -> str:
    return _stemmer().stem(token)


@dataclass(frozen=True)
class Cleaner:
    stopwords: frozenset[str]
    min_token_len: int = 2
    keep_digits: bool = False

    def tokens(self, text: str) -> list[str]:
        return [t for t in tokenize(text, self.keep_digits)
                if len(t) >= self.min_token_len and t not in self.stopwords]

    def lemmas(self, text: str) -> list[str]:
        # stopwords are checked again after lemmatizing ("was" -> "wa" is not, but "others" -> "other" is)
        return [lem for lem in map(lemmatize, self.tokens(text)) if lem not in self.stopwords]


def clean_frame(catalog: pd.DataFrame, field: str, cleaner: Cleaner) -> pd.DataFrame:
    """One row per product id: raw text, lemmas and stems (space-joined)."""
    raw = [select_text(n, d, field) for n, d in zip(catalog["name"], catalog["description"])]
    lemmas = [" ".join(cleaner.lemmas(t)) for t in raw]
    stems = [" ".join(stem(w) for w in lem.split()) for lem in lemmas]
    return pd.DataFrame({"id": catalog["id"].values, "split": catalog["split"].values,
                         "category": catalog["category"].values, "raw": raw, "lemmas": lemmas, "stems": stems})


FIELDS = ("name", "description", "both")


def clean_all_fields(catalog: pd.DataFrame, cleaner: Cleaner) -> pd.DataFrame:
    """Every field cleaned once: columns raw_<field>, lemmas_<field>, stems_<field> for each field.

    Each text representation then picks its own field and form (text_features.<method>.field/input).
    """
    out = catalog[["id", "split", "category"]].reset_index(drop=True)
    for field in FIELDS:
        one = clean_frame(catalog, field, cleaner)
        for col in ("raw", "lemmas", "stems"):
            out[f"{col}_{field}"] = one[col].values
    return out


def field_view(cleaned: pd.DataFrame, field: str) -> pd.DataFrame:
    """The clean_frame() view of one field from the clean_all_fields() table."""
    cols = {f"{c}_{field}": c for c in ("raw", "lemmas", "stems")}
    return cleaned[["id", "split", "category", *cols]].rename(columns=cols)


def cleaning_metrics(cleaned: pd.DataFrame) -> dict:
    def words(col):
        return cleaned[col].str.split().str.len().fillna(0)

    before = cleaned["raw"].map(lambda t: len(tokenize(t, keep_digits=True))).sum()
    lem, stm = words("lemmas").sum(), words("stems").sum()

    def vocab(col):
        return len({w for t in cleaned[col] for w in t.split()})

    return {
        "words_before": int(before),
        "words_after": int(lem),
        "reduction_pct": round(100 * (before - lem) / max(before, 1), 2),
        "avg_words_before": round(before / max(len(cleaned), 1), 2),
        "avg_words_after": round(lem / max(len(cleaned), 1), 2),
        "vocab_before": len({w for t in cleaned["raw"] for w in tokenize(t, True)}),
        "vocab_lemmas": vocab("lemmas"),
        "vocab_stems": vocab("stems"),
        "stem_words": int(stm),
        "empty_after_cleaning": int((cleaned["lemmas"].str.len() == 0).sum()),
    }
