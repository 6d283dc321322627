"""Pinned CPU numerics: the code paths every stage process runs, so that feature files and metrics are
bit-identical on every machine of the study's kind, not only on the one that wrote dvc.lock.

Why. The numerical libraries pick their kernels from the CPU they find (CPUID) when they load: AVX-512
or AVX2 loops, AMX, cache-size blocking, and TensorFlow even switches oneDNN off on CPUs without
AVX512_VNNI / AVX512_BF16 / AMX. Each choice sums floats in another order, so the same image gives a
feature a few ulp apart (MiniLM 5e-7, CLIP 1e-7, VGG16 3e-5, the classical descriptor 5e-7), and
t-SNE + KMeans turn that into another clustering. Measured (bench/, /tmp/det harness): on this machine
(Xeon, AMX) against simulated Skylake-SP / Cascade Lake / Ice Lake / Haswell / Zen CPUs (CPUID
faulting), every extractor of the image and text registries, threads 1 vs 2, heap alignment.

What. `PINNED_ENV` (the default "avx2" tier) caps each library at a code path that every x86-64 CPU with AVX2
runs the same way (Haswell and later Intel, every AMD Zen); the "avx512" tier (FKSTUDY_NUMERICS=avx512) does the
same for CPUs with AVX-512 only, at ~2/3 of the CPU time of MiniLM. The default was "avx512" until the study met
a machine without AVX-512 (an AMD EPYC with AVX2): there OpenBLAS's forced SkylakeX kernels stop the process
with an illegal instruction (SIGILL), so the tier every machine can run is the default. `pin()` sets the variables in os.environ and must run
before numpy / torch / TensorFlow / OpenCV load (stages/_bootstrap.py calls it first thing).
FKSTUDY_NUMERICS=native pins nothing (native-speed benchmarks; bfloat16 on AMX): such runs are not
reproducible across machines. `describe()` says what is in force (for metrics and the README).

Not covered: bfloat16 (features differ by ~2e-3 between AMX, AVX512_BF16 and emulating CPUs; the
ONEDNN_MAX_CPU_ISA cap also switches AMX off); GPUs; AMD CPUs for MKL by contract (MKL documents
MKL_CBWR=AVX2/AVX512 as falling back to its AUTO branch there — measured identical on a simulated Zen 4
all the same — and guarantees only COMPATIBLE, ~3x slower on MiniLM).
"""
from __future__ import annotations

import os
import sys

MODE_VAR = "FKSTUDY_NUMERICS"          # "avx2" (default) | "avx512" | "native" (no pin)

# The code paths, per tier: a tier's features are identical on every CPU that has its instruction set.
TIERS: dict[str, dict[str, str]] = {
    "avx2": {
        # Intel MKL (torch's BLAS: MiniLM's and CLIP's linear layers): conditional numerical
        # reproducibility on its AVX2 branch; STRICT makes ?gemm independent of the thread count too
        # (without it MiniLM differs between 1 and 2 threads on that branch). CNR also fixes MKL's
        # cache-size blocking. Costs ~1.5x CPU time on MiniLM (AVX2 instead of AVX-512 SGEMM).
        "MKL_CBWR": "AVX2,STRICT",
        # torch's own vectorised kernels (softmax, layer norm, GELU, reductions): the AVX2 build
        "ATEN_CPU_CAPABILITY": "avx2",
        # oneDNN, in torch (GELU, convolutions) and TensorFlow (convolutions, matmuls): AVX2 JIT kernels
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        # TensorFlow runs its oneDNN kernels only on CPUs with AVX512_VNNI / AVX512_BF16 / AMX and Eigen
        # contractions elsewhere (VGG16 3e-5 apart on a Skylake-SP): oneDNN on every CPU
        "TF_ENABLE_ONEDNN_OPTS": "1",
        # OpenCV's Intel IPP: its AVX-512 and AVX2 builds give other SIFT values; OpenCV's own dispatched
        # AVX2 / AVX-512 code was measured identical, so only IPP is switched off
        "OPENCV_IPP": "disabled",
        # numpy's AVX-512 loops (SVML log1p/exp/..., AVX-512 sort): the AVX2 (x86-64-v3) ones
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
        # OpenBLAS (numpy, scipy, scikit-learn: PCA, silhouette, logistic regression, the USE port)
        "OPENBLAS_CORETYPE": "Haswell",
    },
    "avx512": {  # every CPU with AVX-512 F/CD/BW/DQ/VL (Skylake-SP and later Xeons; AMD Zen 4)
        "MKL_CBWR": "AVX512,STRICT",
        "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
        "TF_ENABLE_ONEDNN_OPTS": "1",
        "OPENCV_IPP": "disabled",
        "NPY_DISABLE_CPU_FEATURES": "AVX512_ICL AVX512_SPR",
        "OPENBLAS_CORETYPE": "SkylakeX",
    },
}
DEFAULT_TIER = "avx2"     # every x86-64 machine runs it; "avx512" (faster on AVX-512 CPUs) crashes without AVX-512
PINNED_ENV: dict[str, str] = TIERS[DEFAULT_TIER]

# A machine may preset these for correctness (old OpenBLAS builds crash or compute wrongly on CPUs
# they misdetect): a preset value wins over the pin, and describe() shows it.
PRESET_WINS = ("OPENBLAS_CORETYPE",)

LIBRARIES = ("numpy", "torch", "tensorflow", "cv2", "sklearn", "scipy")


def mode(environ=None) -> str:
    """The tier in force: FKSTUDY_NUMERICS (avx2 | avx512 | native), else DEFAULT_TIER."""
    environ = os.environ if environ is None else environ
    value = environ.get(MODE_VAR, "").strip().lower() or DEFAULT_TIER
    if value != "native" and value not in TIERS:
        raise ValueError(f"{MODE_VAR}={value!r}: expected one of {[*TIERS, 'native']}")
    return value


REQUIRED_FLAG = {"avx2": "avx2", "avx512": "avx512f"}   # /proc/cpuinfo flag each tier's code paths need


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags (None where /proc/cpuinfo cannot be read: not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def check_cpu(tier: str, flags: set[str] | None) -> None:
    """Refuse, on one line, a tier this CPU cannot run (its forced kernels would die with SIGILL)."""
    need = REQUIRED_FLAG.get(tier)
    if need and flags is not None and need not in flags:
        raise RuntimeError(f"{MODE_VAR}={tier}: this CPU has no {need.upper()} (its pinned kernels would stop with "
                           f"an illegal instruction); use {MODE_VAR}=avx2 (the default) or native")


def pinned_env(environ=None) -> dict[str, str]:
    """The variables the tier in force pins ({} for native)."""
    tier = mode(environ)
    return {} if tier == "native" else TIERS[tier]


def pin(environ=None) -> dict[str, str]:
    """Set the tier's variables (PINNED_ENV by default) in `environ` (default os.environ); returns what it
    set. Libraries read them once, when they load: one already imported keeps its native code path."""
    environ = os.environ if environ is None else environ
    if mode(environ) == "native":
        return {}
    if environ is os.environ:
        check_cpu(mode(environ), cpu_flags())
        loaded = [m for m in LIBRARIES if m in sys.modules]
        if loaded:
            import warnings

            warnings.warn(f"fkstudy.numerics.pin() after {loaded} loaded: they keep their native code paths",
                          RuntimeWarning, stacklevel=2)
    applied = {}
    for key, value in pinned_env(environ).items():
        if key in PRESET_WINS and environ.get(key) and environ[key] != value:
            continue
        environ[key] = value
        applied[key] = value
    return applied


def describe(environ=None) -> dict:
    """{"mode": tier, "pinned": {var: value in force}, "differs": {var: [pinned, in force]}}: the same on
    every machine when the pins hold, so it can go into metrics (and the README's table)."""
    environ = os.environ if environ is None else environ
    wanted = pinned_env(environ)
    in_force = {k: environ.get(k) for k in sorted({*wanted, *PINNED_ENV})}
    return {"mode": mode(environ), "pinned": in_force,
            "differs": {k: [v, in_force[k]] for k, v in wanted.items() if in_force[k] != v}}
