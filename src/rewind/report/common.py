"""What every figure does at the end."""
from __future__ import annotations

from pathlib import Path


def save_figure(fig, out: str | Path, dpi: int = 130) -> list[Path]:
    """Lay out, write ``out``.png and ``out``.svg, close; returns the paths."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
