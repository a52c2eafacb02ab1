"""Test-suite root: pytest puts this directory on ``sys.path``, so every test folder can
import the shared helpers here (``dist_utils``)."""
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    """One torch thread for a module of tiny-model tests: on a loaded 2-core machine a
    second intra-op thread only adds barrier waits (seconds per test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
