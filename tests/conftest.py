"""Shared pytest setup: quiet TensorFlow, and no state leaking between tests."""

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _auto_precision_is_float32_on_every_host(request, monkeypatch):
    """`precision="auto"` picks float32 in tests, whatever this CPU computes natively.

    Otherwise a recipe test would run mixed_bfloat16 on a CPU with AVX512-BF16
    or AMX and float32 elsewhere. bfloat16 is tested where asked for by name
    (it runs, emulated, on every host); the tests of "auto" itself are marked
    `hardware_detection` and mock the hardware instead.
    """
    if request.node.get_closest_marker("hardware_detection") is None:
        from kerasvision.training import precision

        monkeypatch.setattr(precision, "native_bfloat16_device", lambda: None)


# A full collection (`clear_session`'s default) after this many tests bounds
# the workers' memory; after every test it cost about 0.2 s each with
# TensorFlow's objects in the heap (tests/test_backbones.py and
# tests/test_losses.py, 113 tests: 70 s with it, 49 s without; 2026-12-07,
# 2-core Intel Xeon with AMX).
TESTS_PER_FULL_COLLECTION = 25
_tests_started = itertools.count(1)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts in float32 with a fresh name scope (recipes change the policy)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session(free_memory=next(_tests_started) % TESTS_PER_FULL_COLLECTION == 0)
    yield
    keras.mixed_precision.set_global_policy("float32")
