"""A pretrained sentence encoder fine-tuned end to end (stage fine_tune_text@<encoder>): the transformer, its mean
pooling and a linear head over the top-level categories trained together on the train products.

One model for both inputs the served model meets: each train product is a training example once per view
(`views`: the name + description, the name alone), so the same weights answer a full listing and a bare title.
AdamW, the encoder at `lr` and the new head at `head_lr`, linear warm-up over the first `warmup` of the steps then
linear decay to 0. After every epoch the val products (every view) are scored; the epoch of lowest val loss is kept
(the number of epochs is chosen on val, never on test). Batches hold texts of similar length (a seeded shuffle, then
length-sorted within windows of 8 batches, the batches shuffled again), so little compute goes to padding.

Deterministic under the pinned numerics: torch seeded, deterministic algorithms, `n_jobs` threads; the same
params give the same weights and the same bytes. torch and transformers are imported inside the functions.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..labels import rollup
from .encoders import encode_mean_pooled

WINDOW = 8   # batches per length-sorting window
PROTOCOL = ("encoder + linear head trained on train (one example per product and view), epoch of lowest val loss "
            "kept; baseline: the frozen encoder + text_classifier.head (C on val); test scored once")


@dataclass
class Tuned:
    tokenizer: object
    encoder: object            # the fine-tuned transformer (the kept epoch's weights, eval mode)
    head: object               # torch.nn.Linear(hidden, n_classes) of the kept epoch
    classes: list[str]         # the head's output order (top-level categories or "<top> >> <sub>" labels)
    history: pd.DataFrame      # epoch, loss, accuracy, val_loss, val_accuracy (one row per epoch)
    best_epoch: int
    seconds_per_epoch: float


def length_batches(lengths, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices in batches: a seeded shuffle, sorted by length within windows of WINDOW batches, the batches
    in a seeded order. Every row exactly once."""
    order = rng.permutation(len(lengths))
    lengths = np.asarray(lengths)
    batches = []
    for start in range(0, len(order), batch_size * WINDOW):
        window = order[start:start + batch_size * WINDOW]
        window = window[np.argsort(lengths[window], kind="stable")]
        batches += [window[i:i + batch_size] for i in range(0, len(window), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _schedule(step: int, total: int, warmup: float) -> float:
    """Learning-rate factor: linear warm-up over `warmup` of the steps, then linear decay to 0 at `total`."""
    ramp = max(1, int(round(warmup * total)))
    if step < ramp:
        return (step + 1) / ramp
    return max(0.0, (total - step) / max(1, total - ramp))


def class_proba(tokenizer, encoder, head, docs: list[str], batch_size: int, max_length: int) -> np.ndarray:
    """Softmax probabilities [n, n_classes] (float64, columns in the head's class order), encoder in eval mode."""
    import torch

    encoder.eval()
    emb = encode_mean_pooled(tokenizer, encoder, docs, batch_size, max_length)
    with torch.inference_mode():
        return torch.softmax(head(torch.from_numpy(emb)).double(), dim=1).numpy()


def _log_loss_accuracy(proba: np.ndarray, classes, labels) -> tuple[float, float]:
    """Log loss and accuracy at the top level (a head on sub-categories is read by summing them: labels.rollup)."""
    proba, tops = rollup(proba, classes)
    code = {c: i for i, c in enumerate(tops)}
    y = np.array([code[c] for c in labels])
    picked = np.clip(proba[np.arange(len(y)), y], 1e-15, 1.0)
    return float(-np.log(picked).mean()), float((proba.argmax(1) == y).mean())


def fine_tune(tokenizer, encoder, docs: list[str], labels, val_docs: list[str], val_labels, p, seed: int,
              log=None) -> Tuned:
    """Train `encoder` (a loaded transformers model, changed in place) + a new linear head on docs/labels (top-level
    categories, or "<top> >> <sub>" labels: fkstudy.labels); keep the epoch of lowest val loss at the top level
    (`val_labels`: top-level categories). `p`: the fine_tune_text params section."""
    import torch

    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    classes = sorted(set(labels))
    code = {c: i for i, c in enumerate(classes)}
    y = np.array([code[c] for c in labels])
    head = torch.nn.Linear(encoder.config.hidden_size, len(classes))
    dropout = torch.nn.Dropout(p.dropout)
    decay = [w for n, w in encoder.named_parameters() if not n.endswith("bias") and "LayerNorm" not in n]
    no_decay = [w for n, w in encoder.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW([
        {"params": decay, "lr": p.lr, "weight_decay": p.weight_decay},
        {"params": no_decay, "lr": p.lr, "weight_decay": 0.0},
        {"params": list(head.parameters()), "lr": p.head_lr, "weight_decay": 0.0}])
    lengths = [len(t) for t in tokenizer(docs, truncation=True, max_length=p.max_length)["input_ids"]]
    rng = np.random.default_rng(seed)
    steps_per_epoch = -(-len(docs) // p.batch_size)
    total = steps_per_epoch * p.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _schedule(s, total, p.warmup))
    rows, best, best_loss, spent = [], None, np.inf, 0.0
    for epoch in range(1, p.epochs + 1):
        start = time.perf_counter()
        encoder.train()
        losses, right = [], 0
        for rows_i in length_batches(lengths, p.batch_size, rng):
            batch = tokenizer([docs[i] for i in rows_i], padding=True, truncation=True, max_length=p.max_length,
                              return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            logits = head(dropout(pooled))
            target = torch.from_numpy(y[rows_i])
            loss = torch.nn.functional.cross_entropy(logits, target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()) * len(rows_i))
            right += int((logits.argmax(1) == target).sum())
        spent += time.perf_counter() - start
        val_loss, val_acc = _log_loss_accuracy(
            class_proba(tokenizer, encoder, head, val_docs, p.batch_size * 2, p.max_length), classes, val_labels)
        rows.append({"epoch": epoch, "loss": sum(losses) / len(docs), "accuracy": right / len(docs),
                     "val_loss": val_loss, "val_accuracy": val_acc})
        if log:
            log.info("epoch %d: loss %.4f, val loss %.4f, val accuracy %.4f (%.0f s)", epoch, rows[-1]["loss"],
                     val_loss, val_acc, time.perf_counter() - start)
        if val_loss < best_loss:
            best_loss, best = val_loss, (epoch, copy.deepcopy(encoder.state_dict()), copy.deepcopy(head.state_dict()))
    epoch, encoder_state, head_state = best
    encoder.load_state_dict(encoder_state)
    head.load_state_dict(head_state)
    encoder.eval()
    return Tuned(tokenizer, encoder, head, classes, pd.DataFrame(rows), epoch, spent / p.epochs)


def save(tuned: Tuned, out_dir) -> None:
    """The fine-tuned model as one folder: the transformer and its tokenizer (transformers' format, safetensors)
    and the head (`head.safetensors`, `classes.json`), written beside and swapped in whole."""
    import json
    import os
    import shutil
    from pathlib import Path

    from safetensors.torch import save_file

    out = Path(out_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tuned.encoder.save_pretrained(tmp / "encoder", safe_serialization=True)
    tuned.tokenizer.save_pretrained(tmp / "encoder")
    save_file({k: v.contiguous() for k, v in tuned.head.state_dict().items()}, tmp / "head.safetensors")
    (tmp / "classes.json").write_text(json.dumps(tuned.classes, indent=1) + "\n", encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
