"""Shared test fixtures."""

import os
from pathlib import Path

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


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium with a fresh profile, one for the whole run (playwright's sync API
    allows one instance at a time); playwright downloads no browser of its own."""
    if not CHROMIUM.is_file():
        reason = f"{CHROMIUM} not found; install Debian's chromium (`make setup` does when root)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
