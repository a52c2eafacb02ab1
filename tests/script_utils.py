"""Import a repository script (``benchmarks/*.py``, ``tools/*.py``) as a module, once."""
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(relpath: str, name: str):
    """``ROOT/relpath`` as the module ``name``, imported on the first call only (a script
    that registers datasets or hooks must not run twice)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
