"""fine_tune_text@<encoder> (fkstudy.text.fine_tune): batches, the learning-rate schedule, and a real all-MiniLM-L6-v2
fine-tuned for two short epochs on a few product texts (deterministic, the kept epoch is the lowest val loss, a
sub-category head read at the top level, the saved folder loads back to the same predictions)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from fkstudy.params import ParamsError, load_params
from fkstudy.text import encoders, fine_tune


def test_length_batches_hold_every_row_once_length_sorted_within_windows():
    lengths = np.random.default_rng(1).integers(1, 200, size=203)
    batches = fine_tune.length_batches(lengths, 4, np.random.default_rng(0))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(203))
    assert all(len(b) <= 4 for b in batches)
    assert all(np.all(np.diff(lengths[b]) >= 0) for b in batches)  # each batch within a length-sorted window
    again = fine_tune.length_batches(lengths, 4, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    other = fine_tune.length_batches(lengths, 4, np.random.default_rng(1))
    assert not all(np.array_equal(a, b) for a, b in zip(batches, other))


def test_schedule_warms_up_then_decays_to_zero():
    factors = [fine_tune._schedule(s, 100, 0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))   # non-increasing after the warm-up
    assert 0 < factors[-1] < 0.02
    assert fine_tune._schedule(0, 10, 0.0) == 1.0   # no warm-up: the full rate at once


def _params(**over):
    base = dict(views=["both", "name"], target="category", max_length=32, batch_size=4, lr=5e-5, head_lr=1e-2,
                weight_decay=0.01, warmup=0.1, dropout=0.1, epochs=2)
    return SimpleNamespace(**{**base, **over})


DOCS = ["stainless steel analog watch for men", "baby cotton romper soft", "ceramic coffee mug set of two",
        "laptop usb mouse wireless", "cushion cover floral printed", "face cream moisturising",
        "wall clock wooden decor", "kids bath towel hooded"]
TOPS = ["Watches", "Baby Care", "Kitchen & Dining", "Computers", "Home Furnishing", "Beauty and Personal Care",
        "Home Decor & Festive Needs", "Baby Care"]
SUBS = [f"{t} >> {s}" for t, s in zip(TOPS, ["Wrist Watches", "Infant Wear", "Coffee Mugs", "Laptop Accessories",
                                            "Cushions", "Skin Care", "Clocks", "Bath"])]


def _tune(labels, **over):
    tokenizer, model = encoders.load_transformer(encoders.bert_model_dir(""))
    return fine_tune.fine_tune(tokenizer, model, DOCS, labels, DOCS[:4], TOPS[:4], _params(**over), seed=3)


def test_fine_tuning_is_deterministic_and_keeps_the_lowest_val_loss(tmp_path):
    import torch

    torch.set_num_threads(1)
    a, b = _tune(TOPS), _tune(TOPS)
    assert list(a.history.columns) == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
    assert a.history.equals(b.history)
    assert all(torch.equal(x, y) for x, y in zip(a.encoder.state_dict().values(), b.encoder.state_dict().values()))
    assert a.best_epoch == int(a.history.loc[a.history["val_loss"].idxmin(), "epoch"])
    proba = fine_tune.class_proba(a.tokenizer, a.encoder, a.head, DOCS[:4], 2, 32)
    assert proba.shape == (4, len(set(TOPS))) and np.allclose(proba.sum(1), 1)
    # the kept weights are the best epoch's: their val loss is the history's minimum
    assert fine_tune._log_loss_accuracy(proba, a.classes, TOPS[:4])[0] == pytest.approx(a.history["val_loss"].min(),
                                                                                          rel=1e-5)
    fine_tune.save(a, tmp_path / "model")
    assert json.loads((tmp_path / "model/classes.json").read_text()) == a.classes
    tokenizer, reloaded = encoders.load_transformer(tmp_path / "model/encoder")
    assert np.array_equal(encoders.encode_mean_pooled(tokenizer, reloaded, DOCS, 2, 32),
                          encoders.encode_mean_pooled(a.tokenizer, a.encoder, DOCS, 2, 32))


def test_a_sub_category_head_is_scored_at_the_top_level():
    tuned = _tune(SUBS, epochs=1)
    assert tuned.classes == sorted(set(SUBS))
    proba = fine_tune.class_proba(tuned.tokenizer, tuned.encoder, tuned.head, DOCS[:4], 2, 32)
    assert proba.shape == (4, len(set(SUBS)))
    loss, _ = fine_tune._log_loss_accuracy(proba, tuned.classes, TOPS[:4])
    assert loss == pytest.approx(tuned.history["val_loss"].iloc[0], rel=1e-5)


def test_params_refuse_an_unknown_target_and_an_encoder_that_cannot_be_fine_tuned(tmp_path):
    from fkstudy.params import repo_root

    text = (repo_root() / "params.yaml").read_text()
    bad = tmp_path / "params.yaml"
    bad.write_text(text.replace("  target: category ", "  target: brand    ", 1))
    with pytest.raises(ParamsError, match="fine_tune_text.target"):
        load_params(bad, sections={"fine_tune_text"})
    bad.write_text(text.replace("  fine_tune_text: [bert]", "  fine_tune_text: [use]", 1))
    with pytest.raises(ParamsError, match="pipeline.fine_tune_text"):
        load_params(bad)
