"""Local model figures: training time and prediction throughput on synthetic labelled texts.

Run: ``.venv/bin/python -m benchmarks.models [--examples 10000] [--labels 4]``

Prints, for the local provider (TF-IDF + logistic regression, as the bot trains it):

- dataset import: writing the examples as a folder of ``.txt`` files and reading them with
  ``dataset.select`` (validation included);
- training: the full ``train_local`` (learning curve of 5 fits + the final fit) and the final fit alone;
- prediction: texts per second in one batch (``model.test``'s path) and one at a time (``model.predict``'s);
- evaluation: accuracy on a held-out 20%, so a regression in quality shows next to speed.
"""

from __future__ import annotations

import argparse
import pathlib
import random
import tempfile
import time

from engine.files import FileGate
from integrations.models.config import Limits
from integrations.models.datasets import Example, load_folder, split_holdout
from integrations.models.providers.local import train_local

_VOCAB = {
    'sports': 'match goal team coach season player league score win stadium referee',
    'weather': 'rain sunny cloud storm wind forecast temperature snow humid cold',
    'food': 'recipe taste spicy dinner bake sugar salt restaurant menu fresh',
    'tech': 'software laptop update battery screen network code cloud server phone',
    'music': 'song album guitar concert band lyrics melody drum singer tour',
    'travel': 'flight hotel beach passport trip luggage train city tour map',
}
_FILLER = [
    'the',
    'a',
    'and',
    'of',
    'to',
    'in',
    'is',
    'it',
    'that',
    'for',
    'with',
    'on',
    'this',
    'was',
    'very',
    'really',
    'quite',
]


def synthetic(n: int, labels: int, seed: int = 0) -> list[Example]:
    """Short texts mixing topic words and filler, with some shared words so the task is not trivial."""
    rng = random.Random(seed)
    names = list(_VOCAB)[:labels]
    examples = []
    for i in range(n):
        label = names[i % len(names)]
        words = _VOCAB[label].split()
        other = _VOCAB[names[(i + 1) % len(names)]].split()
        text = [rng.choice(words) for _ in range(rng.randint(1, 3))]
        text += [rng.choice(other) for _ in range(rng.randint(0, 4))]
        text += [rng.choice(_FILLER) for _ in range(rng.randint(4, 12))]
        rng.shuffle(text)
        examples.append(Example(' '.join(text), label, f'synthetic:{i}'))
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--examples', type=int, default=10_000)
    parser.add_argument('--labels', type=int, default=4, choices=range(2, len(_VOCAB) + 1))
    args = parser.parse_args()

    examples = synthetic(args.examples, args.labels)
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        folder = root / 'set'
        folder.mkdir()
        for i, e in enumerate(examples):
            (folder / f'{i:06}.txt').write_text(e.text, encoding='utf-8')
        t0 = time.perf_counter()
        imported = load_folder(folder, FileGate(roots=(root,)), 'x', Limits())
        t_import = time.perf_counter() - t0
    assert len(imported.examples) == len(examples)

    train, held = split_holdout(examples, 0.2, 0)
    t0 = time.perf_counter()
    model, rows = train_local(train, held)
    t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_local(train, held)  # a second run, for a figure without first-call overheads
    t_train2 = time.perf_counter() - t0

    texts = [e.text for e in held]
    t0 = time.perf_counter()
    predicted = model.predict(texts)
    t_batch = time.perf_counter() - t0
    sample = texts[:500]
    t0 = time.perf_counter()
    for text in sample:
        model.predict([text])
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    for text in sample[:200]:
        model.explain(text)
    t_explain = time.perf_counter() - t0
    accuracy = sum(p == e.label for p, e in zip(predicted, held, strict=True)) / len(held)

    print(f'examples: {len(examples)} ({args.labels} labels), train {len(train)}, held out {len(held)}')
    print(f'import {len(examples)} .txt files (dataset.select): {t_import:.2f} s')
    print(f'train_local (learning curve + final fit): {t_train:.2f} s, repeat {t_train2:.2f} s')
    print(f'learning curve steps: {[int(r["step"]) for r in rows]}')
    print(f'predict, one batch of {len(texts)}: {len(texts) / t_batch:,.0f} texts/s')
    print(f'predict, one text per call: {len(sample) / t_single:,.0f} texts/s')
    print(f'chat reply (label + nearest example): {200 / t_explain:,.0f} replies/s')
    print(f'held-out accuracy: {accuracy:.3f}')


if __name__ == '__main__':
    main()
