"""Test setup shared by every test.

torch is imported before tensorflow can be: with torch 2.14.1, creating a torch
model after TF had run segfaulted (measured); torch first works.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

try:  # torch first, see above
    import torch  # noqa: F401
    # torchvision too (open_clip imports it): importing it after a Keras model had run
    # segfaulted in its C++ ops registration (measured); importing it first works.
    import torchvision  # noqa: F401
except ImportError:  # pragma: no cover - torch is in requirements.txt
    pass
