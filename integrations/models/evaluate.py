"""Testing a model: read labelled test data, score predictions, draw the confusion matrix.

Test data is a JSON list of ``{"text", "label"}`` objects (JSONL and CSV are accepted too, with the
same validation report as dataset uploads), or the part of the dataset held out at training.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Sequence

import attrs

from engine.i18n import _, format_number, format_percent, ngettext
from engine.states.actions import ActionError
from integrations.models.config import Limits
from integrations.models.datasets import Example, check_upload_size, load_upload
from integrations.models.plots import plot_confusion

__all__ = ['Evaluation', 'evaluate', 'evaluation_text', 'load_test_data']


@attrs.define(kw_only=True)
class Evaluation:
    id: str
    model: str
    count: int
    accuracy: float
    labels: list[str]
    per_label: dict[str, dict[str, float]]
    """precision, recall, f1 and support of each label."""
    matrix: list[list[int]]
    misclassified: list[dict[str, str]]
    """``{text, label, predicted}`` of each wrong prediction."""
    plot: str = ''


def load_test_data(path: pathlib.Path, display: str, limits: Limits) -> tuple[list[Example], str]:
    """Examples from an uploaded test file, and the validation report (empty when clean)."""
    check_upload_size(path, display, limits)
    if display.lower().endswith('.json'):
        with path.open('rb') as fh:
            start = fh.read(4096).lstrip(b'\xef\xbb\xbf \t\r\n')[:1]
        if start != b'[':  # parsed once, as a stream of objects, by load_upload
            raise ActionError(
                _('{display}: expected a JSON list of {{"text": ..., "label": ...}} objects').format(display=display)
            )
    result = load_upload(path, display, None, limits, default_label=None)
    if not result.examples:
        raise ActionError(
            _('{display}: no usable test examples.\n{value}').format(display=display, value=result.report())
        )
    if len(result.examples) > limits.max_test_examples:
        raise ActionError(
            _('{display} has {count} test examples; the limit is {limit}').format(
                display=display, count=len(result.examples), limit=limits.max_test_examples
            )
        )
    return result.examples, result.report() if result.issues else ''


def evaluate(
    test_id: str, model: str, examples: Sequence[Example], predicted: Sequence[str], folder: pathlib.Path
) -> Evaluation:
    """Accuracy, per-label precision/recall/F1, the confusion matrix (and its PNG) and the mistakes."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support  # slow import

    truth = [e.label for e in examples]
    labels = sorted(set(truth) | set(predicted))
    with warnings.catch_warnings():  # a one-label test is legitimate; labels= already fixes the shapes
        warnings.filterwarnings('ignore', message='A single label was found', category=UserWarning)
        precision, recall, f1, support = precision_recall_fscore_support(
            truth, predicted, labels=labels, zero_division=0
        )
        matrix = confusion_matrix(truth, predicted, labels=labels).tolist()
    per_label = {
        label: {
            'precision': round(float(precision[i]), 4),
            'recall': round(float(recall[i]), 4),
            'f1': round(float(f1[i]), 4),
            'support': int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    wrong = [
        {'text': e.text, 'label': e.label, 'predicted': p}
        for e, p in zip(examples, predicted, strict=True)
        if e.label != p
    ]
    plot = plot_confusion(matrix, labels, folder / 'confusion.png')
    return Evaluation(
        id=test_id,
        model=model,
        count=len(examples),
        accuracy=round(float(accuracy_score(truth, predicted)), 4),
        labels=labels,
        per_label=per_label,
        matrix=matrix,
        misclassified=wrong,
        plot=str(plot),
    )


def evaluation_text(ev: Evaluation, *, examples: int = 5) -> str:
    """The result for chat: accuracy, a line per label, the first few mistakes."""
    lines = [
        ngettext(
            'Test {id} of {model}: accuracy {accuracy} on {count} example.',
            'Test {id} of {model}: accuracy {accuracy} on {count} examples.',
            ev.count,
        ).format(id=ev.id, model=ev.model, accuracy=format_percent(ev.accuracy), count=format_number(ev.count))
    ]
    for label, m in ev.per_label.items():
        lines.append(
            _('- {label}: precision {precision}, recall {recall}, f1 {f1} (n={n})').format(
                label=label,
                precision=format_number(m['precision'], 2),
                recall=format_number(m['recall'], 2),
                f1=format_number(m['f1'], 2),
                n=m['support'],
            )
        )
    if ev.misclassified:
        wrong = len(ev.misclassified)
        lines.append(
            ngettext(
                '{count} misclassified (saved as test {id}), e.g.:',
                '{count} misclassified (saved as test {id}), e.g.:',
                wrong,
            ).format(count=wrong, id=ev.id)
        )
        for item in ev.misclassified[:examples]:
            text = item['text'] if len(item['text']) <= 80 else item['text'][:77] + '...'
            lines.append(
                _('  "{text}": expected {label}, got {predicted}').format(
                    text=text, label=item['label'], predicted=item['predicted']
                )
            )
    return '\n'.join(lines)
