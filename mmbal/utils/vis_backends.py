"""Check, before the runner is built, that every visualizer backend can import its package.

MMEngine imports a backend's package (``tensorboard``, ``wandb``) only when the backend
first writes, on rank 0 alone: a missing package then fails one rank deep in a hook while
the others wait for it. :func:`check_vis_backends` fails on every rank, up front, and says
what to install.
"""
import importlib

from mmengine.config import Config
from mmengine.visualization import TensorboardVisBackend, WandbVisBackend

from mmbal.registry import VISBACKENDS

# Backend class -> (the module it imports, how to install it).
REQUIRED_MODULES = {
    TensorboardVisBackend: ('torch.utils.tensorboard',
                            'pip install -e ".[optional]" (or pip install tensorboard)'),
    WandbVisBackend: ('wandb', 'pip install wandb'),
}


def check_vis_backends(cfg: Config) -> None:
    """Raise ``ImportError`` naming the backend of ``visualizer.vis_backends`` whose package
    is missing and the command that installs it."""
    visualizer = cfg.get('visualizer')
    if not isinstance(visualizer, dict):
        return
    for i, backend in enumerate(visualizer.get('vis_backends') or []):
        cls = backend.get('type') if isinstance(backend, dict) else type(backend)
        if isinstance(cls, str):
            cls = VISBACKENDS.get(cls)  # None if unknown: the Runner names it when building
        for base, (module, install) in REQUIRED_MODULES.items():
            if not (isinstance(cls, type) and issubclass(cls, base)):
                continue
            try:
                importlib.import_module(module)
            except ImportError as err:
                raise ImportError(f'visualizer.vis_backends[{i}] is {cls.__name__}, which '
                                  f'needs {module} ({err}); install it with {install} '
                                  f'(config: {cfg.filename})') from err
