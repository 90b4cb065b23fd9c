"""The charts a Russian user receives (learning curve, confusion matrix) are labelled in Russian."""

from __future__ import annotations

import pathlib
import re

import pytest

from engine import i18n
from integrations.models.plots import plot_confusion, plot_training

_ENGLISH_WORD = re.compile(
    r'\b(?:step|loss|accuracy|train|valid|learning|curve|examples|predicted|true|matrix)\b', re.I
)


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text drawn on a chart as it is saved."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    texts: list[str] = []
    save = Figure.savefig

    def recording(fig: Figure, *args: object, **kw: object) -> None:
        texts.extend(t.get_text() for t in fig.findobj(Text) if t.get_text())
        save(fig, *args, **kw)

    monkeypatch.setattr(Figure, 'savefig', recording)
    return texts


def test_a_russian_users_charts_have_russian_titles_axes_and_legends(tmp_path: pathlib.Path, drawn: list[str]) -> None:
    rows = [
        {'step': 1, 'train_loss': 0.9, 'valid_loss': 1.0, 'train_accuracy': 0.5, 'valid_accuracy': 0.4},
        {'step': 2, 'train_loss': 0.5, 'valid_loss': 0.7, 'train_accuracy': 0.8, 'valid_accuracy': 0.7},
    ]
    with i18n.use('ru'):
        assert plot_training(rows, tmp_path / 'training.png', title='local-1') is not None
        plot_confusion([[3, 1], [0, 4]], ['pos', 'neg'], tmp_path / 'confusion.png')
    labels = [t for t in drawn if not re.fullmatch(r'[\d.,−\-]+|pos|neg|local-1', t)]
    assert labels and not [t for t in labels if _ENGLISH_WORD.search(t)], labels
