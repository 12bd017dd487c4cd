"""Sentiment of movie reviews with an Embedding and an LSTM (the book's chapter 6).

With ``--data FOLDER`` it reads the IMDB reviews in the standard ``aclImdb`` layout
(``FOLDER/train/pos/*.txt``, ``train/neg``, ``test/pos``, ``test/neg``; from
https://ai.stanford.edu/~amaas/data/sentiment/): lower-cased words, the ``--vocab`` most frequent
kept (0 pads, 1 stands for any other word), each review cut or front-padded to ``--maxlen`` words.
Without data it runs on a synthetic task so that it always runs offline: "reviews" of neutral
words with a few positive and negative ones mixed in, positive when the positive words outnumber
the negative ones. Prints the test accuracy and saves the training history as a figure.

    python examples/sentiment.py                                  # the synthetic task
    python examples/sentiment.py --data ~/data/aclImdb --epochs 3 --limit 5000
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

import portnn


def synthetic(n: int, maxlen: int, vocab: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Token rows (front-padded with 0) and labels: 1 when words 2-11 outnumber words 12-21."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, maxlen), np.int64)
    y = np.zeros(n, np.int64)
    for i in range(n):
        length = int(rng.integers(maxlen // 2, maxlen + 1))
        words = rng.integers(22, vocab, length)
        pos, neg = rng.choice(4, 2, replace=False)  # never a tie
        where = rng.choice(length, pos + neg, replace=False)
        words[where[:pos]] = rng.integers(2, 12, pos)
        words[where[pos:]] = rng.integers(12, 22, neg)
        x[i, maxlen - length:], y[i] = words, int(pos > neg)
    return x, y


def read_imdb(folder: Path, part: str, limit: int | None) -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, name in ((1, "pos"), (0, "neg")):
        files = sorted((folder / part / name).glob("*.txt"))[:None if limit is None else limit // 2]
        if not files:
            sys.exit(f"sentiment.py: no reviews in {folder / part / name}; pass the aclImdb folder "
                     "with --data")
        texts += [f.read_text(encoding="utf-8") for f in files]
        labels += [label] * len(files)
    return texts, np.array(labels, np.int64)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("<br />", " "))


def encode(texts: list[str], index: dict[str, int], maxlen: int) -> np.ndarray:
    """Each text as its last ``maxlen`` word indices, front-padded with 0 (unknown words are 1)."""
    x = np.zeros((len(texts), maxlen), np.int64)
    for i, text in enumerate(texts):
        ids = [index.get(w, 1) for w in words(text)][-maxlen:]
        if ids:
            x[i, maxlen - len(ids):] = ids
    return x


def load(args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    if args.data is None:
        x, y = synthetic(args.limit or 2000, args.maxlen, args.vocab, args.seed)
        xt, yt = synthetic(args.test_limit or 500, args.maxlen, args.vocab, args.seed + 1)
        print(f"synthetic reviews: {len(x)} training, {len(xt)} test, {args.vocab} words, "
              f"length {args.maxlen}")
        return x, y, xt, yt
    texts, y = read_imdb(Path(args.data), "train", args.limit)
    test_texts, yt = read_imdb(Path(args.data), "test", args.test_limit)
    counts = Counter(w for text in texts for w in words(text))
    index = {w: i + 2 for i, (w, _) in enumerate(counts.most_common(args.vocab - 2))}
    print(f"IMDB reviews from {args.data}: {len(texts)} training, {len(test_texts)} test")
    return encode(texts, index, args.maxlen), y, encode(test_texts, index, args.maxlen), yt


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="the aclImdb folder (default: a synthetic task)")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--vocab", type=int, default=200, help="words kept (IMDB: try 10000)")
    p.add_argument("--maxlen", type=int, default=30, help="words per review (IMDB: try 200)")
    p.add_argument("--units", type=int, default=32, help="embedding size and LSTM units")
    p.add_argument("--limit", type=int, default=None, help="training reviews (synthetic: 2000)")
    p.add_argument("--test-limit", type=int, default=None, help="test reviews (synthetic: 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("--out", default="runs")
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="exit with status 1 if the test accuracy is below this")
    args = p.parse_args(argv)
    started = time.perf_counter()
    portnn.seed(args.seed)
    x, y, x_test, y_test = load(args)
    model = portnn.Sequential([portnn.Embedding(args.vocab, args.units), portnn.LSTM(args.units, args.units),
                               portnn.Dense(args.units, 2)], loss="crossentropy",
                              optimizer=portnn.Adam(args.lr, global_clipnorm=5.0))
    history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose,
                        validation_data=(x_test, y_test))
    result = model.evaluate(x_test, y_test)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "sentiment.npz")
    try:
        history.plot(out / "sentiment.png")
        figure = f"; figure {out / 'sentiment.png'}"
    except ImportError:  # matplotlib is in the examples extra
        figure = ""
    print(f"test loss={result['loss']:.4f} test accuracy={result['accuracy']:.4f} "
          f"({time.perf_counter() - started:.1f} s){figure}")
    if args.min_accuracy is not None and result["accuracy"] < args.min_accuracy:
        sys.exit(f"test accuracy {result['accuracy']:.4f} is below --min-accuracy {args.min_accuracy}")


if __name__ == "__main__":
    try:
        main()
    except portnn.BackendError as exc:
        sys.exit(f"portnn: {exc}")
