"""Transfer learning with Keras: frozen backbone -> GlobalAveragePooling -> Dense(relu) -> Dropout -> softmax.

The backbone is frozen, so `backbone(image)` is a fixed function: the head is trained on the
backbone's cached GAP features (data/features/image/<backbone>.npz, plus the precomputed augmented
views for the augmented variant) — the same model as training the assembled network with a frozen
backbone, at seconds instead of an hour per run on this CPU. `assemble` then joins the backbone and
the trained head into one Keras model (saved as model.keras) for inference and Grad-CAM.

Config (params.yaml `train`, fkstudy.train.params.TrainParams): head {units, dropout}, optimizer
(adam | sgd | rmsprop), lr, batch_size, epochs, patience (early stopping on val loss; the best epoch's
weights are kept), fine_tune, augment. The framework-neutral head file (head.npz) is fkstudy.train.head_npz;
fine-tuning the backbone's last layers is fkstudy.train.fine_tune.
TensorFlow is imported inside the functions: a torch process can import this module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..frameworks import tensorflow

OPTIMIZERS = ("adam", "sgd", "rmsprop")


def _keras():
    tensorflow()
    import keras

    return keras


def set_determinism(seed: int) -> None:
    """Python/numpy/TF seeds and deterministic TF kernels: the same params give the same weights."""
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass


def build_head(input_dim: int, n_classes: int, units: int = 1024, dropout: float = 0.5, name: str = "head"):
    keras = _keras()
    inp = keras.Input((input_dim,), name="features")
    x = keras.layers.Dense(units, activation="relu", name="dense")(inp)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="out")(x)
    return keras.Model(inp, out, name=name)


def make_optimizer(name: str, lr: float):
    keras = _keras()
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=lr)
    raise ValueError(f"train.optimizer must be one of {OPTIMIZERS}, got {name!r}")


def _history(h) -> tuple[pd.DataFrame, int]:
    """A Keras History as one row per epoch (epoch, loss, accuracy, val_loss, val_accuracy) and the best
    (lowest val loss, 1-based) epoch."""
    hist = pd.DataFrame(h.history)
    hist.insert(0, "epoch", np.arange(1, len(hist) + 1))
    return hist, int(hist["val_loss"].idxmin()) + 1


def fit_head(X_train, y_train, X_val, y_val, n_classes: int, cfg, seed: int):
    """Train the head (y = class indices). Returns (model, history DataFrame, info).

    history: epoch, loss, accuracy, val_loss, val_accuracy (one row per epoch run);
    info: best_epoch (1-based, lowest val loss, whose weights the model keeps), epochs_run.
    """
    keras = _keras()
    X_train, X_val = np.asarray(X_train, np.float32), np.asarray(X_val, np.float32)
    if len(X_train) == 0 or len(X_val) == 0:
        raise ValueError(f"fit_head needs train and val rows, got {len(X_train)} / {len(X_val)}")
    set_determinism(seed)
    model = build_head(X_train.shape[1], n_classes, cfg.head.units, cfg.head.dropout)
    # one compiled call per epoch instead of one per batch: the same steps in the same order (the per-epoch
    # history was measured identical), ~10 % less CPU on a 512-d head; callbacks only act at epoch ends
    model.compile(optimizer=make_optimizer(cfg.optimizer, cfg.lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], steps_per_execution=-(-len(X_train) // cfg.batch_size))
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)
    h = model.fit(X_train, np.asarray(y_train), validation_data=(X_val, np.asarray(y_val)),
                  epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True, callbacks=[stop], verbose=0)
    hist, best = _history(h)
    return model, hist, {"best_epoch": best, "epochs_run": int(len(hist))}


def predict_proba(model, X, batch_size: int = 256) -> np.ndarray:
    p = np.asarray(model.predict(np.asarray(X, np.float32), batch_size=batch_size, verbose=0), dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7


def assemble(backbone, head, name: str = "transfer"):
    """One Keras model: image (preprocessed float) -> frozen backbone (GAP output) -> head."""
    keras = _keras()
    backbone.trainable = False
    inp = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inp, head(backbone(inp, training=False)), name=name)


# ------------------------------------------------------------------------- optional fine-tuning
def unfreeze_last(backbone, n_layers: int) -> list[str]:
    """Make the last `n_layers` weight-carrying layers of the backbone trainable (BatchNormalization
    layers stay frozen and in inference mode, the usual fine-tuning practice); return their names."""
    keras = _keras()
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    picked = []
    for layer in reversed(backbone.layers):
        if len(picked) >= n_layers:
            break
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
            picked.append(layer.name)
    return picked[::-1]
