"""Test-suite root: pytest puts this directory on ``sys.path``, so every test folder can
import the shared helpers here (``dist_utils``)."""
