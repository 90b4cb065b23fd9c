"""PNG charts for training (loss and accuracy per step) and tests (confusion matrix).

Matplotlib runs on the Agg backend with an explicit Figure (no pyplot global state), so charts
can be drawn from worker threads and on servers without a display.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from engine.i18n import N_, _

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ['metric_name', 'plot_confusion', 'plot_training']

_SERIES = {
    'train_loss': N_('training loss'),
    'valid_loss': N_('validation loss'),
    'train_accuracy': N_('training accuracy'),
    'valid_accuracy': N_('validation accuracy'),
    'full_valid_loss': N_('full validation loss'),
    'full_valid_mean_token_accuracy': N_('full validation accuracy'),
}
"""Names of the metrics, in charts and reports (in the reply language)."""


def metric_name(key: str) -> str:
    """A metric's name for people (``train_loss``: training loss), in the reply language; unknown keys as they are."""
    return _(_SERIES[key]) if key in _SERIES else key


def _figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas; matplotlib is imported here, on the first chart, not at bot start."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _series(rows: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for row in rows:
        value = row.get(key)
        if value is not None and not math.isnan(value):
            xs.append(row.get('step', len(xs) + 1))
            ys.append(value)
    return xs, ys


def plot_training(
    rows: Sequence[Mapping[str, float]], path: pathlib.Path, *, title: str, xlabel: str | None = None
) -> pathlib.Path | None:
    """Loss (left) and, where present, accuracy (right) per step; ``None`` when there is nothing to draw.

    :param rows: one mapping per step with ``step`` and any of ``train_loss``, ``valid_loss``,
        ``train_accuracy``, ``valid_accuracy``.
    """
    losses = [k for k in ('train_loss', 'valid_loss') if _series(rows, k)[0]]
    accuracies = [k for k in ('train_accuracy', 'valid_accuracy') if _series(rows, k)[0]]
    if not losses and not accuracies:
        return None
    panels = [p for p in (losses, accuracies) if p]
    fig = _figure((5 * len(panels), 3.6))
    for index, keys in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), index)
        for key in keys:
            xs, ys = _series(rows, key)
            ax.plot(xs, ys, marker='o' if len(xs) < 30 else None, label=metric_name(key))
        ax.set_xlabel(xlabel or _('step'))
        ax.set_ylabel(_('loss') if keys is losses else _('accuracy'))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format='png')
    return path


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: pathlib.Path) -> pathlib.Path:
    """A confusion matrix (rows: true label, columns: predicted) with counts in the cells."""
    size = max(3.5, 0.6 * len(labels) + 2)
    fig = _figure((size, size))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(matrix, cmap='Blues')
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha='right')
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel(_('predicted label'))
    ax.set_ylabel(_('true label'))
    peak = max((max(r) for r in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha='center', va='center', color='white' if value > peak / 2 else 'black')
    ax.set_title(_('Confusion matrix'))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format='png')
    return path
