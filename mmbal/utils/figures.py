"""Headless matplotlib figures for the analysis tools (matplotlib is an optional extra)."""
from typing import Any, Tuple


def new_figure(figsize: Tuple[float, float], what: str) -> Any:
    """A ``matplotlib.figure.Figure`` on an Agg canvas: no pyplot state, no display needed.

    Args:
        figsize: Width and height in inches.
        what: What needs the figure, named in the error when matplotlib is missing.

    Raises:
        ImportError: matplotlib is not installed; the message says how to install it.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f'{what} needs matplotlib, an optional extra of mmbal: install it '
                          f'with pip install -e ".[optional]" (or pip install matplotlib)') from e
    fig = Figure(figsize=figsize, layout='constrained')
    FigureCanvasAgg(fig)
    return fig
