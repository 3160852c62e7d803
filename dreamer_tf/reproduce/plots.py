"""Learning curves: mean and spread over seeds, with published points marked."""

import io
from dataclasses import dataclass, field

import numpy as np

from dreamer_tf.fileio import write_atomic


@dataclass
class Series:
    label: str
    curves: list  # one (steps, values) pair of arrays per seed


@dataclass
class Points:
    label: str
    steps: list
    means: list
    stds: list  # None where the source gives no spread


@dataclass
class Panel:
    title: str
    series: list = field(default_factory=list)
    points: list = field(default_factory=list)
    levels: list = field(default_factory=list)  # (label, value): scores without a step


def mean_and_spread(curves):
    """Mean and std over seeds on the steps all seeds cover.

    Seeds evaluate at different steps when runs were resumed, so each curve is
    linearly interpolated onto the union of their steps inside the range every
    seed covers. The std is None for a single seed.
    """
    curves = [(np.asarray(s, float), np.asarray(v, float)) for s, v in curves if len(s)]
    if not curves:
        return np.zeros(0), np.zeros(0), None
    low = max(steps[0] for steps, _ in curves)
    high = min(steps[-1] for steps, _ in curves)
    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    grid = grid[(grid >= low) & (grid <= high)]
    values = np.stack([np.interp(grid, steps, vals) for steps, vals in curves])
    std = values.std(0) if len(curves) > 1 else None
    return grid, values.mean(0), std


def plot(path, panels, xlabel='env steps', ylabel='eval return', title=None,
         legend_below=False):
    """Draw one axis per panel into a PNG at `path` (written atomically); with
    `legend_below`, each legend goes under its axis (for panels of many series)."""
    import matplotlib

    matplotlib.use('Agg')  # files only: no display on servers and CI
    import matplotlib.pyplot as plt

    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    entries = max(len(p.series) + len(p.points) + len(p.levels) for p in panels)
    height = 3.6 + (0.16 * entries if legend_below else 0.0)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, height * rows), squeeze=False)
    colors = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for ax, panel in zip(axes.flat, panels):
        color_of = {}
        for series in panel.series:
            color = color_of.setdefault(series.label, colors[len(color_of) % len(colors)])
            for steps, values in series.curves:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            grid, mean, std = mean_and_spread(series.curves)
            seeds = len(series.curves)
            label = f'{series.label} (mean of {seeds} seeds ± std)' if seeds > 1 else (
                f'{series.label} (1 seed)')
            ax.plot(grid, mean, color=color, linewidth=1.8, marker='o', markersize=3, label=label)
            if std is not None:
                ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2)
        for points in panel.points:
            color = color_of.setdefault(points.label, colors[len(color_of) % len(colors)])
            errors = [0.0 if s is None else s for s in points.stds]
            ax.errorbar(points.steps, points.means, yerr=errors, fmt='*', markersize=11,
                        color=color, markeredgecolor='black', capsize=4,
                        label=f'paper: {points.label}')
        for label, value in panel.levels:
            ax.axhline(value, linestyle='--', color='gray', linewidth=1, label=label)
        ax.set_title(panel.title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if legend_below:
            ax.legend(fontsize=6, loc='upper center', bbox_to_anchor=(0.5, -0.18), frameon=False)
        else:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=110, bbox_inches='tight' if legend_below else None)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
