"""Text cleaning: field selection, tokens, stopwords, lemmas (WordNet), stems, per-product frame, metrics."""
from __future__ import annotations

import pandas as pd
import pytest

from fkstudy.text.clean import (Cleaner, clean_frame, cleaning_metrics, lemmatize, select_text, stem,
                                stopword_list, tokenize)

SK = stopword_list("sklearn", [])


@pytest.mark.parametrize("name, desc, field, expected", [
    ("Red Mug", "A ceramic mug.", "name", "Red Mug"),
    ("Red Mug", "A ceramic mug.", "description", "A ceramic mug."),
    ("Red Mug", "A ceramic mug.", "both", "Red Mug. A ceramic mug."),
    ("", "A ceramic mug.", "name", "A ceramic mug."),          # no name: fall back to the description
    ("Red Mug", "  ", "description", "Red Mug"),               # no description: fall back to the name
    ("Red Mug", "", "both", "Red Mug"),
    ("", "A ceramic mug.", "both", "A ceramic mug."),          # no leading ". "
    (None, None, "both", ""),
    ("  Red \n\n Mug\t", "A  ceramic\r\nmug", "both", "Red Mug. A ceramic mug"),
])
def test_select_text(name, desc, field, expected):
    assert select_text(name, desc, field) == expected


def test_select_text_unknown_field():
    with pytest.raises(ValueError, match="unknown text field 'title'"):
        select_text("a", "b", "title")


def test_tokenize_strips_punctuation_and_digits():
    text = "Rockmantra's Mug, 350ml (2 PCS) -- Buy @ Rs.299!"
    assert tokenize(text) == ["rockmantra", "s", "mug", "ml", "pcs", "buy", "rs"]
    assert tokenize(text, keep_digits=True) == ["rockmantra", "s", "mug", "350", "ml", "2", "pcs", "buy", "rs",
                                                "299"]
    assert tokenize("") == [] and tokenize("!!! 123") == []


def test_stopword_lists():
    assert {"the", "and", "of", "other"} <= SK and "towel" not in SK
    extra = stopword_list("sklearn", ["Flipkart", "RS"])
    assert {"flipkart", "rs"} <= extra and extra > SK
    assert stopword_list("none", ["buy"]) == frozenset({"buy"})
    with pytest.raises(ValueError, match="unknown stopword source"):
        stopword_list("nltk", [])


def test_cleaner_tokens_length_and_stopwords():
    c = Cleaner(stopword_list("sklearn", ["flipkart"]), min_token_len=3)
    assert c.tokens("The TV and a towel at Flipkart.com, only Rs 99") == ["towel", "com"]
    c2 = Cleaner(stopword_list("none", []), min_token_len=1, keep_digits=True)
    assert c2.tokens("The TV, 2 towels") == ["the", "tv", "2", "towels"]


def test_lemmatize_with_wordnet():
    assert [lemmatize(w) for w in ("towels", "watches", "mugs", "boxes", "children", "glasses")] == \
        ["towel", "watch", "mug", "box", "child", "glass"]
    assert lemmatize("cotton") == "cotton"


def test_lemmas_drop_words_that_become_stopwords():
    c = Cleaner(SK)
    assert "ones" not in SK and lemmatize("ones") == "one" and "one" in SK
    assert c.lemmas("Baby towels, the ones with hoods") == ["baby", "towel", "hood"]


def test_stem():
    assert [stem(w) for w in ("running", "towels", "beautiful", "watches")] == ["run", "towel", "beauti", "watch"]


@pytest.fixture
def catalog():
    return pd.DataFrame({
        "id": ["b", "a", "c"], "split": ["train", "test", "val"], "category": ["Home", "Watches", "Home"],
        "name": ["Bath Towels, 2 Running Mugs", "The Watches", ""],
        "description": ["Cotton", "Analog", "the and of it"],
    })


def test_clean_frame_keeps_ids_and_order(catalog):
    out = clean_frame(catalog, "name", Cleaner(SK))
    assert list(out.columns) == ["id", "split", "category", "raw", "lemmas", "stems"]
    assert out["id"].tolist() == ["b", "a", "c"]
    assert out["split"].tolist() == ["train", "test", "val"] and out["category"].tolist() == ["Home", "Watches", "Home"]
    assert out["raw"].tolist() == ["Bath Towels, 2 Running Mugs", "The Watches", "the and of it"]
    assert out["lemmas"].tolist() == ["bath towel running mug", "watch", ""]
    assert out["stems"].tolist() == ["bath towel run mug", "watch", ""]


def test_clean_frame_fields(catalog):
    both = clean_frame(catalog, "both", Cleaner(SK))
    assert both["lemmas"].tolist() == ["bath towel running mug cotton", "watch analog", ""]
    desc = clean_frame(catalog, "description", Cleaner(SK))
    assert desc["lemmas"].tolist() == ["cotton", "analog", ""]


def test_cleaning_metrics_by_hand(catalog):
    m = cleaning_metrics(clean_frame(catalog, "name", Cleaner(SK)))
    # raw tokens (digits kept): 5 + 2 + 4 = 11 ; lemmas: 4 + 1 + 0 = 5
    assert m == {
        "words_before": 11, "words_after": 5, "reduction_pct": 54.55,
        "avg_words_before": 3.67, "avg_words_after": 1.67,
        "vocab_before": 10,          # bath towels 2 running mugs the watches and of it
        "vocab_lemmas": 5,           # bath towel running mug watch
        "vocab_stems": 5,            # bath towel run mug watch
        "stem_words": 5,
        "empty_after_cleaning": 1,
    }


def test_clean_all_fields_matches_per_field_frames(catalog):
    from fkstudy.text.clean import FIELDS, clean_all_fields, field_view

    wide = clean_all_fields(catalog, Cleaner(SK))
    assert list(wide["id"]) == list(catalog["id"])
    for field in FIELDS:
        one = clean_frame(catalog, field, Cleaner(SK))
        pd.testing.assert_frame_equal(field_view(wide, field), one)
