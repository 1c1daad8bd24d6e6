"""What every figure does at the end."""
from __future__ import annotations

import contextlib
from pathlib import Path

FORMATS = ("png", "svg")  # what save_figure writes; see only_formats


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


def save_figure(fig, out: str | Path, dpi: int = 130) -> list[Path]:
    """Lay out, write ``out``.png and ``out``.svg (FORMATS), close; returns the paths."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(f".{f}") for f in FORMATS]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
