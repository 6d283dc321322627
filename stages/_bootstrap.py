"""Put the repo's src/ first on sys.path (and set process-wide env before any library loads).

Stages import the library from the checkout they run in (also inside the temp
copies DVC makes for queued experiments), not from an installed copy elsewhere.
"""
import os
import sys
from pathlib import Path

# OpenMP threads that spin while waiting made t-SNE/KMeans 10-20x slower when another job held a
# core (measured on the 2-core machines). Passive waiting must be set before any library loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# CPU-only machines: no CUDA probing, and none of TensorFlow's C++ start-up lines (cuInit "errors",
# absl's "All log messages before absl::InitializeLog()", oneDNN notices) in the stage logs
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if os.environ["CUDA_VISIBLE_DEVICES"] == "" else "2")

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

# The same code paths on every machine of the study's kind (fkstudy.numerics), before numpy / torch /
# TensorFlow / OpenCV load: same params -> bit-identical features and metrics
from fkstudy import numerics  # noqa: E402

try:
    numerics.pin()
except RuntimeError as exc:  # a tier this CPU cannot run: one line, before any library could die with SIGILL
    sys.exit(f"error: {exc}")
