"""What every figure does at the end."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

# what save_figure writes (see only_formats); $REWIND_FIGURES=svg writes one file a figure (the docs' figures)
FORMATS = tuple(f.strip() for f in os.environ.get("REWIND_FIGURES", "png,svg").split(",") if f.strip()) or ("png", "svg")


@contextlib.contextmanager
def only_formats(*formats: str):
    """Within the block, figures are written in ``formats`` only (the HTML pages inline SVG and need
    no PNG: half the drawing time)."""
    global FORMATS
    saved, FORMATS = FORMATS, tuple(formats)
    try:
        yield
    finally:
        FORMATS = saved


class Plot(list):
    """The paths a figure was written to (a list, as before), with the figure itself: ``.figure``
    is the matplotlib Figure, and a notebook shows the plot inline (``_repr_png_``)."""

    def __init__(self, paths, figure):
        super().__init__(paths)
        self.figure = figure

    def _repr_png_(self) -> bytes:
        import io

        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    def __repr__(self) -> str:
        return f"Plot({list.__repr__(self)})"


def save_figure(fig, out: str | Path | None, dpi: int = 130) -> Plot:
    """Lay out, write ``out``.png and ``out``.svg (FORMATS; nothing with ``out`` None), and hand the
    figure back with the paths (:class:`Plot`); the figure is closed in pyplot (no second display)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    paths = []
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        paths = [out.with_suffix(f".{f}") for f in FORMATS]
        for p in paths:
            fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return Plot(paths, fig)
