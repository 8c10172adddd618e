"""Seeded English sentence templates: more text for the synthetic corpus voices.

Why: the 121 hand-written sentences of `corpus_texts/en.txt` are too few for a GPT to learn
durations of phones in new contexts (it memorised them: docs/base_model_snapshot.md), and no
English text corpus can be installed offline. These templates combine word lists written for
this project into plain everyday sentences; `write_template_file` renders a reproducible set to
`corpus_texts/en_templates.txt`, which the rendering sources read beside `en.txt`.

    python -m training.sentence_templates --count 1500 --seed 0
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

_PEOPLE = ["my brother", "our teacher", "the doctor", "a young woman", "the old farmer", "my neighbour",
           "the captain", "her father", "the new student", "a tall man", "the baker", "our manager",
           "his grandmother", "the pilot", "a quiet boy", "the nurse", "my cousin", "the waiter",
           "the engineer", "a friendly driver", "the judge", "your sister", "the singer", "a little girl"]
_NAMES = ["Anna", "Peter", "Lucy", "Thomas", "Grace", "Oliver", "Maria", "George", "Emily", "Jack",
          "Sophie", "Daniel", "Helen", "Victor", "Rose", "Samuel", "Julia", "Frank", "Nora", "Philip"]
_THINGS = ["a red bicycle", "the kitchen window", "a heavy box", "the garden gate", "a wooden chair",
           "the morning paper", "a cup of coffee", "the blue jacket", "a basket of apples", "the car keys",
           "a birthday cake", "the front door", "a pair of shoes", "the old piano", "a bright lamp",
           "the shopping list", "a glass of water", "the silver ring", "a thick book", "the yellow boat",
           "a loaf of bread", "the broken clock", "a warm blanket", "the map of the city", "a small dog"]
_PLACES = ["in the park", "at the station", "near the river", "behind the school", "on the second floor",
           "in the village", "at the market", "by the lake", "under the bridge", "in the office",
           "at the hospital", "on the beach", "in the garden", "at the airport", "near the church",
           "in the library", "on the hill", "at the corner shop", "in the museum", "outside the theatre"]
_TIMES = ["yesterday", "this morning", "last week", "every Sunday", "after dinner", "on Friday night",
          "before sunrise", "in the spring", "at noon", "tomorrow evening", "three days ago", "every winter",
          "during the storm", "right after lunch", "later today", "on her birthday", "in nineteen ninety"]
_PAST = ["found", "painted", "carried", "bought", "cleaned", "fixed", "dropped", "borrowed", "sold",
         "washed", "moved", "opened", "lost", "brought", "wrapped", "checked", "measured", "hid"]
_INTRANS = ["waited", "laughed", "stopped", "walked home", "fell asleep", "sang quietly", "worked late",
            "stayed inside", "ran away", "sat down", "looked around", "smiled", "danced", "called back"]
_ADJ = ["quiet", "busy", "cold", "warm", "crowded", "empty", "beautiful", "noisy", "dark", "bright",
        "strange", "comfortable", "expensive", "cheap", "clean", "dusty", "peaceful", "huge", "tiny"]
_NOUNS = ["room", "street", "house", "road", "hotel", "kitchen", "train", "forest", "city", "shop",
          "harbour", "restaurant", "classroom", "field", "valley", "castle", "bus", "island"]
_QUESTION = ["Where did", "Why did", "When did", "How did"]
_NUMBERS = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "fifteen",
            "twenty", "thirty", "forty", "fifty", "a hundred"]
_PLURALS = ["bottles", "letters", "chairs", "tickets", "candles", "oranges", "pencils", "boxes", "shirts",
            "stones", "photographs", "plates", "flowers", "coins"]


def _subject(r: random.Random) -> str:
    return r.choice(_NAMES) if r.random() < 0.4 else r.choice(_PEOPLE)


def _cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _sentence(r: random.Random) -> str:
    kind = r.randrange(8)
    if kind == 0:
        return f"{_cap(_subject(r))} {r.choice(_PAST)} {r.choice(_THINGS)} {r.choice(_PLACES)} {r.choice(_TIMES)}."
    if kind == 1:
        return f"{_cap(r.choice(_TIMES))}, {_subject(r)} {r.choice(_INTRANS)} {r.choice(_PLACES)}."
    if kind == 2:
        return f"The {r.choice(_NOUNS)} was {r.choice(_ADJ)} and {r.choice(_ADJ)} {r.choice(_TIMES)}."
    if kind == 3:
        return f"{r.choice(_QUESTION)} {_subject(r)} leave {r.choice(_THINGS)} {r.choice(_PLACES)}?"
    if kind == 4:
        return f"There were {r.choice(_NUMBERS)} {r.choice(_PLURALS)} {r.choice(_PLACES)}."
    if kind == 5:
        return (f"{_cap(_subject(r))} said that the {r.choice(_NOUNS)} {r.choice(_PLACES)} "
                f"is too {r.choice(_ADJ)}.")
    if kind == 6:
        return f"Please bring {r.choice(_THINGS)} when you come {r.choice(_TIMES)}."
    return f"{_cap(_subject(r))} {r.choice(_INTRANS)} because {_subject(r)} {r.choice(_PAST)} {r.choice(_THINGS)}."


def template_sentences(count: int, seed: int = 0, exclude: set[str] = frozenset()) -> list[str]:
    """`count` distinct sentences (deterministic for a seed), none of them in `exclude`."""
    r = random.Random(seed)
    out: list[str] = []
    seen = set(exclude)
    for _ in range(count * 50):
        if len(out) == count:
            break
        s = _sentence(r)
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def write_template_file(path: Path, count: int, seed: int = 0) -> Path:
    header = ("# Template sentences for the synthetic corpus voices (training.sentence_templates, "
              f"count {count}, seed {seed};\n# word lists written for this project, public domain). "
              "Regenerate with: python -m training.sentence_templates\n")
    path.write_text(header + "\n".join(template_sentences(count, seed)) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "corpus_texts" / "en_templates.txt")
    args = p.parse_args(argv)
    print(write_template_file(args.out, args.count, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
