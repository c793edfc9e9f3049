"""The texts every system is measured on: one text per request, 6 to 40 words each (or
another range: ``--words``)."""

from __future__ import annotations

import random
from pathlib import Path

MIN_WORDS, MAX_WORDS = 6, 40

_WORDS = """
the a of to and in for on with by from about after before under over between through
search engine index query document ranking result user click page site answer question
model server request batch queue latency throughput token embedding vector cluster
similar meaning sentence paragraph language english text word number price order
customer product review shipping delivery return refund account password email phone
weather rain morning evening city train station ticket flight hotel room dinner recipe
music movie book library school student teacher lesson course exam health doctor
garden tree river mountain ocean summer winter coffee tea bread market street bike car
quickly slowly often never always today yesterday tomorrow new old small large fast
cheap expensive simple careful broken working useful strange happy tired busy quiet
is are was were has have will can should could find shows returns keeps sends reads
writes opens closes starts stops builds runs helps needs wants likes asks explains
""".split()

# fixed texts for the correctness check, beside a few corpus texts: accents, CJK, an emoji
CHECK_TEXTS = (
    "A man is eating food.",
    "Café crème brûlée, naïve façade, Ångström.",
    "東京は日本の首都です。",
    "Triton serves sentence embeddings 🚀 for search and clustering.",
)


def generate(
    count: int, seed: int, min_words: int = MIN_WORDS, max_words: int = MAX_WORDS
) -> list[str]:
    """``count`` texts of min_words..max_words words; the same seed gives the same texts."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(min_words, max_words))]
        texts.append(" ".join(words).capitalize() + rng.choice(".?!"))
    return texts


def load(path: Path) -> list[str]:
    """One text per line; blank lines are skipped."""
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    texts = [text for text in texts if text]
    if not texts:
        raise SystemExit(f"{path}: no texts (one per line expected)")
    return texts


def check_texts(corpus: list[str], count: int = 8) -> list[str]:
    """The texts of the correctness check: the fixed ones and the first corpus texts."""
    return [*CHECK_TEXTS, *corpus[:count]]
