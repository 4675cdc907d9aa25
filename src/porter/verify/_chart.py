"""A metric's trend as a chart file (PNG or SVG), for ``porter verify trend --png/--svg``.

matplotlib draws it (imported here only, with the non-interactive Agg backend, so no display is
needed and nothing else pays for the import).  Spec levels are drawn as horizontal lines in the
metric's unit, the passing side of each shaded lightly, so a reader sees at once which runs met
which level.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["trend_chart"]

_LEVEL_STYLE = {"minimum": ("#c0392b", "--"), "design": ("#d68910", "-."), "stretch": ("#1e8449", ":")}


def trend_chart(
    path: str | Path,
    metric: str,
    unit: str,
    lines: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    levels: Mapping[str, tuple[str, float]] | None = None,
) -> Path:
    """Write ``lines`` (label → (times in seconds since the epoch, values)) to ``path`` (.png or .svg).

    ``levels`` maps a level to (operator, threshold in ``unit``).  Returns the path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    if out.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"{out}: a chart is written as .png or .svg")
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    try:
        for label, (times, values) in lines.items():
            when = np.array(
                [datetime.datetime.fromtimestamp(t, tz=datetime.UTC) for t in times], dtype=object
            )
            ax.plot(when, values, marker="o", markersize=3, linewidth=1.2, label=label)
        for level, (operator, threshold) in (levels or {}).items():
            colour, style = _LEVEL_STYLE.get(level, ("#555555", "-"))
            ax.axhline(
                threshold,
                color=colour,
                linestyle=style,
                linewidth=1,
                label=f"{level} {operator} {threshold:g}",
            )
        ax.set_title(metric)
        ax.set_ylabel(unit or "value")
        ax.grid(alpha=0.3)
        if len(lines) + len(levels or {}) > 1:
            ax.legend(fontsize="small", loc="best")
        import matplotlib.dates as mdates

        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
