"""params.yaml schema of the image stages (prep_images, image_features@classical/sift_bovw/orb_bovw).

Merged into fkstudy.config.SCHEMA (`SCHEMA.update(IMAGE_SCHEMA)`); the deep extractors add
their own entries under "image_features".
"""
from __future__ import annotations

from fkstudy.config import P

_BOVW = {
    "max_keypoints": P(int, lo=10, hi=10_000),   # per image (cv2 nfeatures)
    "k": P(int, lo=2, hi=10_000),                # visual words
    "max_descriptors": P(int, lo=1_000),         # codebook fitted on at most this many train descriptors
    "normalize": P(str, choices=("l1", "l2", "none")),
    "tfidf": P(bool),                            # idf from train rows only
}

IMAGE_SCHEMA: dict = {
    "prep_images": {
        "size": P(int, lo=32, hi=1024),          # square side of the cached images
        "aspect": P(str, choices=("pad", "crop", "stretch")),
        "blank_threshold": P(float, lo=0.0, hi=255.0),  # grey std below which a photo is near-blank
        "jpeg_draft": P(bool),                   # libjpeg reduced-size decoding (faster, anti-aliased)
        "samples_per_category": P(int, lo=1, hi=20),
    },
    "image_features": {
        "classical": {
            "color_bins": P(int, lo=4, hi=64),
            "grid": P(int, lo=1, hi=16),
            "sift_max_keypoints": P(int, lo=10, hi=10_000),
        },
        "sift_bovw": dict(_BOVW),
        "orb_bovw": dict(_BOVW),
    },
}
