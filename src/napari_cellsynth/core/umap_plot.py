"""The UMAP filter figure (as paper 004, Fig. 6): real classes, the minority highlighted, synthetic points
kept or dropped, and the ellipse.  Draws on a matplotlib ``Figure`` (no pyplot), so the CLI saves it as a
PNG and the napari widget embeds the same drawing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the filter (scikit-learn, UMAP) is the caller's; drawing it needs neither imported here
    from .umap_filter import UmapGmmFilter


def draw_filter(ax, fitted: UmapGmmFilter, synthetic_points: np.ndarray | None = None,
                keep: np.ndarray | None = None, level: float | None = None, title: str = ""):
    """Draw on ``ax``; returns the synthetic scatter artist (for picking) or None."""
    ax.clear()
    ax.set_axis_on()  # a widget's placeholder turns the axes off
    classes = sorted(set(fitted.labels_.tolist()))
    for k, name in enumerate(classes):
        members = fitted.labels_ == name
        is_minority = name == fitted.minority_
        # the minority as the mixture saw it (placed by the same transform as the synthetic samples)
        points = fitted.minority_points_ if is_minority else fitted.embedding_[members]
        ax.scatter(*points.T, s=10 if is_minority else 3, alpha=0.9 if is_minority else 0.25,
                   color="black" if is_minority else f"C{k % 10}", label=f"{name} (real{', minority' if is_minority else ''})",
                   zorder=3 if is_minority else 1)
    level = fitted.level_ if level is None else level
    outline = fitted.ellipse(level)
    ax.plot(*outline.T, color="crimson", linewidth=1.5, label=f"ellipse, level {level:.2f}", zorder=4)
    artist = None
    if synthetic_points is not None and len(synthetic_points):
        keep = np.ones(len(synthetic_points), bool) if keep is None else np.asarray(keep, bool)
        artist = ax.scatter(*synthetic_points.T, s=22, marker="x",
                            c=["limegreen" if k else "grey" for k in keep], zorder=5, picker=5,
                            label=f"synthetic: {int(keep.sum())} kept, {int((~keep).sum())} dropped")
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.legend(fontsize=7, markerscale=1.5, loc="best")
    ax.set_title(title or f"UMAP of classifier features, minority {fitted.minority_}", fontsize=9)
    return artist


def save_filter_figure(path, fitted: UmapGmmFilter, synthetic_points=None, keep=None, level=None) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 6))
    draw_filter(fig.add_subplot(), fitted, synthetic_points, keep, level)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
