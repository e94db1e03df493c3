"""Shared test fixtures."""

import pytest
import torch

from zfkit import models


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second OpenMP thread, which contends badly on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def zf():
    """ZFNet exactly as Fig. 3 (62 M parameters: built once per test run)."""
    return models.zfnet()


@pytest.fixture(scope="session")
def alex():
    """Krizhevsky's AlexNet as one dense tower."""
    return models.alexnet()
