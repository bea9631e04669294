import pytest
import torch

import normswitch as ns

_ENV = ("NORMSWITCH_CONFIG", "NORMSWITCH_BACKEND", "USE_NATIVE_LAYERNORM", "NORMSWITCH_COUNT_CALLS",
        "NORMSWITCH_TUNED", "NORMSWITCH_RECORD_CALLS")


@pytest.fixture(autouse=True)
def clean_normswitch(monkeypatch):
    """Every test starts from a clean registry and environment, and fresh random numbers."""
    import os

    for var in list(os.environ):
        if var in _ENV or var.startswith("NORMSWITCH_BACKEND_"):
            monkeypatch.delenv(var)
    torch.manual_seed(1234)
    ns.reset()
    yield
    ns.reset()
