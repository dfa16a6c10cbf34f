"""Generated text with long-range structure of known span, for judging what a method learns beyond the unroll.

Both corpora are plain text over printable ASCII, deterministic in (length, seed), and are read as any text file is
(`data=text`). The filler between the structures is words drawn from a fixed first-order chain over a small
vocabulary, so a model has local structure to learn as well.

`lag` (spans given in characters, by default 8, 16 and 32: 2x, 4x and 8x an unroll of 4):

    ... the cat (7 sat on a )7 mat ran [3 the dog far and a cat on )...]3 ...

Each bracket type has one span: its opener and a random digit, then exactly `span` characters after the opener its
closer and the same digit. Predicting the closer's position needs a count over the span; predicting its digit needs
the opener's digit, `span` characters back (log2(10) = 3.3 bits each time).

`nested`: lines of nested brackets and quotes, and counter lines:

    ( the cat [ sat " on a mat " ] ran ( far ) )
    <xxxxxxx|yyyyyyy>

A closer must match the innermost open bracket, however long ago it opened (a stack); a counter line has as many
y's as x's, up to `max_count` (a count across the line).
"""
from __future__ import annotations

import numpy as np

WORDS = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far", "to", "of", "in", "it", "was", "big")
BRACKETS = (("(", ")"), ("[", "]"), ("{", "}"))


def _filler_chain(rng: np.random.Generator) -> np.ndarray:
    """A fixed, sparse word-to-word transition matrix: each word is followed by one of 4 words."""
    chain = np.zeros((len(WORDS), len(WORDS)))
    for i in range(len(WORDS)):
        chain[i, rng.choice(len(WORDS), 4, replace=False)] = rng.dirichlet(np.ones(4))
    return chain


def _filler(rng: np.random.Generator, chain: np.ndarray, length: int) -> list[str]:
    out, word = [], int(rng.integers(len(WORDS)))
    while len(out) < length:
        out.extend(WORDS[word] + " ")
        word = int(rng.choice(len(WORDS), p=chain[word]))
    return out[:length]


def lag_text(length: int, spans=(8, 16, 32), density: float = 0.3, seed: int = 0) -> str:
    """`density`: about how often a bracket type opens, per span length (0.3: each type is open about a quarter of
    the time)."""
    rng = np.random.default_rng(seed)
    chars = _filler(rng, _filler_chain(np.random.default_rng(1)), length)
    taken = np.zeros(length, dtype=bool)
    for (opener, closer), span in zip(BRACKETS, spans):
        position = 0
        while True:
            position += int(rng.geometric(density / span)) + 1
            end = position + span  # the closer sits `span` characters after the opener
            if end + 1 >= length:
                break
            slots = [position, position + 1, end, end + 1]
            if taken[slots].any():
                continue
            digit = str(int(rng.integers(10)))
            chars[position], chars[position + 1], chars[end], chars[end + 1] = opener, digit, closer, digit
            taken[slots] = True
            position = end + 1  # one bracket of a type open at a time
    return "".join(chars)


def nested_text(length: int, max_depth: int = 4, max_count: int = 24, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    chain = _filler_chain(np.random.default_rng(2))
    pairs = (*BRACKETS, ('"', '"'))

    def expression(depth: int) -> str:
        parts = []
        for _ in range(int(rng.integers(1, 4))):
            if depth < max_depth and rng.random() < 0.5:
                opener, closer = pairs[int(rng.integers(len(pairs)))]
                if opener == '"':  # quotes hold words only: they do not nest
                    inner = "".join(_filler(rng, chain, int(rng.integers(4, 16)))).strip()
                else:
                    inner = expression(depth + 1)
                parts.append(f"{opener} {inner} {closer}")
            else:
                parts.append("".join(_filler(rng, chain, int(rng.integers(3, 12)))).strip())
        return " ".join(parts)

    lines, size = [], 0
    while size < length:
        if rng.random() < 0.3:
            count = int(rng.integers(1, max_count + 1))
            line = "<" + "x" * count + "|" + "y" * count + ">"
        else:
            line = expression(0)
        lines.append(line + "\n")
        size += len(line) + 1
    return "".join(lines)[:length]
