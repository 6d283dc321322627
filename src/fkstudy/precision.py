"""Compute precision of the torch and Keras encoders, shared by the text and the image half.

float32 is the reproducible default. bfloat16 runs torch models under CPU autocast (oneDNN, AMX where the
CPU has it) and Keras models under the mixed_bfloat16 policy; features are stored as float32 either way.
Under a pinned numerics tier (fkstudy.numerics) oneDNN is capped below AVX512_BF16 / AMX, so bfloat16 is
emulated and slower than float32: `bfloat16_note` says so, once per process.
"""
from __future__ import annotations

import contextlib
import logging

PRECISIONS = ("float32", "bfloat16")


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def autocast(precision: str):
    """The context a torch model runs in: bfloat16 autocast on the CPU, or nothing for float32."""
    import torch

    if check(precision) == "bfloat16":
        warn_if_emulated()
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warn_if_emulated() -> None:
    """Log once per process when bfloat16 cannot use the CPU's bf16 units."""
    note = bfloat16_note()
    if note and not getattr(warn_if_emulated, "said", False):
        logging.getLogger(__name__).warning(note)
        warn_if_emulated.said = True


def bfloat16_note(environ=None) -> str | None:
    """Why bfloat16 will be slow here, or None: a pinned tier caps oneDNN below AVX512_BF16 / AMX, so bfloat16
    matmuls and convolutions are emulated (slower than float32). bfloat16 pays only with FKSTUDY_NUMERICS=native,
    and its features then differ between CPUs (the price of AMX); float32 is the reproducible default."""
    from .numerics import MODE_VAR, TIERS, mode

    tier = mode(environ)
    if tier == "native":
        return None
    return (f"precision bfloat16 under {MODE_VAR}={tier}: oneDNN is capped at "
            f"{TIERS[tier]['ONEDNN_MAX_CPU_ISA']} (no AVX512_BF16 / AMX), so bfloat16 is emulated and slower than "
            f"float32; run with {MODE_VAR}=native for the AMX speed (features then not bit-identical across CPUs)")
