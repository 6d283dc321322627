"""Test setup shared by every test.

torch is imported before tensorflow can be: with torch 2.14.1, creating a torch
model after TF had run segfaulted (measured); torch first works.
"""
import os
import socket
import sys
from pathlib import Path

# as stages/_bootstrap.py: spinning OpenMP waits made a 45-point t-SNE take 24 s instead of 0.3 s
# whenever another process held a core (measured); set before torch/sklearn load OpenMP
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

try:  # torch first, see above
    import torch  # noqa: F401
    # torchvision too (open_clip imports it): importing it after a Keras model had run
    # segfaulted in its C++ ops registration (measured); importing it first works.
    import torchvision  # noqa: F401
except ImportError:  # pragma: no cover - torch is in requirements.txt
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a host fails at once."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
