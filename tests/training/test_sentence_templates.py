"""Template sentences: reproducible, distinct, never an evaluation sentence, and the shipped file
is what the generator makes (so the corpus text can be regenerated)."""
from __future__ import annotations

from pathlib import Path

from training.corpus_sources import load_texts
from training.sentence_templates import template_sentences, write_template_file

TEXTS = Path(__file__).resolve().parents[2] / "training" / "corpus_texts"


def test_sentences_are_seeded_distinct_and_respect_exclusions() -> None:
    a = template_sentences(300, seed=5)
    assert a == template_sentences(300, seed=5) and a != template_sentences(300, seed=6)
    assert len(set(a)) == 300 and all(s[0].isupper() and s[-1] in ".?" for s in a)
    assert not set(template_sentences(300, seed=5, exclude=set(a[:10]))) & set(a[:10])


def test_shipped_file_is_the_generator_output_and_is_read_with_en(tmp_path: Path, voices_dir: Path) -> None:
    shipped = TEXTS / "en_templates.txt"
    regenerated = write_template_file(tmp_path / "en_templates.txt", 1500, 0)
    assert regenerated.read_text() == shipped.read_text()
    texts = load_texts("en")
    assert len(texts) == len(set(texts)) >= 1500 + 100  # en.txt first, then the templates
    tests = {line.strip() for f in voices_dir.glob("*/test.txt") for line in f.read_text().splitlines()}
    assert tests and not tests & set(texts)
