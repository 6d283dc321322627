"""Zero-shot classification in a joint image-text embedding space (CLIP): each photo gets the class
whose prompt embedding is the most cosine-similar. Pure numpy: the embeddings come from
fkstudy.image.deep (extract_clip / clip_text_features)."""
from __future__ import annotations

import numpy as np

from .cluster import normalize


def prompts(classes, template: str) -> list[str]:
    """One prompt per class, e.g. "a product photo of {}" -> "a product photo of watches"."""
    if "{}" not in template:
        raise ValueError(f"prompt template must contain '{{}}' for the class name, got {template!r}")
    return [template.format(c.lower()) for c in classes]


def zero_shot_proba(image_emb: np.ndarray, text_emb: np.ndarray, temperature: float = 100.0) -> np.ndarray:
    """Softmax over classes of temperature * cosine(image, class prompt): [n_images, n_classes]."""
    image_emb, text_emb = np.asarray(image_emb), np.asarray(text_emb)
    if image_emb.ndim != 2 or text_emb.ndim != 2 or image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(f"embeddings must be [n, d] and [k, d] with the same d, got {image_emb.shape} "
                         f"and {text_emb.shape}")
    logits = temperature * normalize(image_emb, "l2") @ normalize(text_emb, "l2").T
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)
