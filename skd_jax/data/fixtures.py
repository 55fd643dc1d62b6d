"""Synthetic raw files in the paper datasets' REAL formats, names and sizes.

    python -m skd_jax.data.fixtures --out /tmp/raw [--task gsm8k]
    task = get_task("gsm8k", train_size=1000, raw_dir="/tmp/raw")

Each writer puts files where `sources.py` looks for them (`<raw_dir>/<source>/`),
with the file names, field names, row counts and text conventions of the real
releases, so the paper tasks' whole path (file resolution, readers, split
carving, the 1K training subsets, tfds preparation) runs offline at real scale:

| writer | files | rows |
|---|---|---|
| `write_flores` | `flores200/{asm_Beng,eng_Latn}.{dev,devtest}` (one sentence a line, aligned) | 997 / 1012 |
| `write_dialogsum` | `dialogsum/{train,validation,test}.csv` (id, dialogue, summary, topic) | 12,460 / 500 / 1,500 |
| `write_gsm8k` | `gsm8k/{train,test}.jsonl` (question, answer ending "#### N") | 7,473 / 1,319 |
| `write_ultrainteract` | `ultrainteract/ultrainteract_sft.jsonl` (id, parent_id, task, dataset, instruction, response) | 1,500 Math_CoT + 600 other tasks |
| `write_math500` | `math500/test.jsonl` (problem, solution, answer, subject, level, unique_id) | 500 |

The text is synthetic but consistent: GSM8K answers are the arithmetic of their
questions (with "<<a*b=c>>" calculator annotations), math responses box the
right answer, DialogSum summaries restate the dialogue's facts, and each
Assamese line is a fixed word-by-word pseudo-translation (Bengali script) of
its English line. Nothing here is real data: it exercises formats, sizes and
metrics, not model quality. DialogSum's test file, like knkarthick/dialogsum's,
holds 500 dialogues with three reference summaries each (ids `test_{i}_{k}`).

Every writer is deterministic in `seed` (Python's `random.Random`, which is
stable across platforms and versions for these calls). All five take well under
two seconds together and stream rows to disk.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import time
import zlib
from typing import Callable, Iterable, Sequence

DEFAULT_SEED = 0
FLORES_SIZES = {"dev": 997, "devtest": 1012}
DIALOGSUM_SIZES = {"train": 12460, "validation": 500, "test": 1500}
DIALOGSUM_TEST_SUMMARIES = 3          # Test dialogues carry three references each.
GSM8K_SIZES = {"train": 7473, "test": 1319}
ULTRAINTERACT_MATH_COT_ROWS = 1500    # >= train_size 1000 + validation 200.
ULTRAINTERACT_OTHER_ROWS = 600        # Coding / Math_PoT / Logic rows (filtered out).
MATH500_ROWS = 500
MATH_COT_PREAMBLE = ("Solve the following math problem step-by-step.\n"
                     "Simplify your answer as much as possible. Present your final "
                     "answer as \\boxed{Your Answer}.\n")

_NAMES = ("Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Mark", "Ken",
          "Alexis", "Tina", "Randy", "Joy", "Carla", "Brandon", "Priya", "Mohan",
          "Rosa", "Jamal", "Mei", "Tobias", "Anita", "Oscar", "Leila", "Samir")


def _rng(seed: int, name: str) -> random.Random:
  return random.Random(f"skd-fixtures/{name}/{seed}")


def _unique(make: Callable[[], dict], count: int, key: str, seen: set) -> list[dict]:
  """`count` rows from `make()` whose `key` fields are all new (also vs `seen`)."""
  rows = []
  while len(rows) < count:
    row = make()
    if row[key] not in seen:
      seen.add(row[key])
      rows.append(row)
  return rows


def _write_jsonl(path: str, rows: Iterable[dict]) -> int:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  count = 0
  with open(path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
      count += 1
  return count


def _write_lines(path: str, lines: Sequence[str]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(line + "\n" for line in lines)


# ----------------------------------------------------------------------------
# Flores-200.
# ----------------------------------------------------------------------------

_SUBJECTS = ("The mayor", "Scientists at the university", "The local council",
             "A spokesperson for the company", "Police", "The national team",
             "Researchers", "The government", "Farmers in the region", "The museum",
             "Doctors at the hospital", "The festival organisers", "Engineers",
             "Residents of the village", "The airline", "Teachers", "The committee")
_VERBS = ("announced", "reported", "confirmed", "described", "discovered", "rejected",
          "approved", "studied", "celebrated", "investigated", "opened", "planned",
          "criticised", "completed", "measured", "welcomed")
_ADJECTIVES = ("new", "large", "small", "ancient", "important", "rare", "public",
               "modern", "traditional", "serious", "unusual", "popular", "local")
_NOUNS = ("bridge", "plan", "survey", "species", "festival", "road", "school", "report",
          "flood", "temple", "market", "vaccine", "river", "election", "railway",
          "telescope", "tea garden", "language", "storm", "library")
_PLACES = ("in Guwahati", "near the Brahmaputra river", "in the northern districts",
           "at the conference", "in the capital", "on the island", "in the mountains",
           "along the coast", "in several cities", "across the state")
_TIMES = ("on Monday", "last week", "earlier this year", "on Friday morning",
          "after the rains", "during the summer", "in {year}", "{n} days ago")
_TAILS = ("", "", ", according to officials", ", although the details were not released",
          ", and more than {n} people attended", ", which had been delayed for years",
          " because of the heavy rain", ", the report said")

_BENGALI_CONSONANTS = "কখগঘচছজঝটঠডঢণতথদধনপফবভমযৰলৱশষসহ"
_BENGALI_VOWEL_SIGNS = ("", "া", "ি", "ী", "ু", "ূ", "ে", "ৈ", "ো", "ৌ", "")
_BENGALI_DIGITS = str.maketrans("0123456789", "০১২৩৪৫৬৭৮৯")
_LATIN_SYLLABLES = ("ka", "lo", "mi", "ru", "sen", "ta", "vo", "ne", "pa", "di", "gor")


def _english_sentence(rng: random.Random) -> str:
  noun = rng.choice(_NOUNS)
  adjective = rng.choice(_ADJECTIVES)
  obj = f"{'an' if adjective[0] in 'aeiou' else 'a'} {adjective} {noun}"
  if rng.random() < 0.5:
    obj += f" for the {rng.choice(_NOUNS)}"
  fill = dict(year=rng.randint(1990, 2023), n=rng.randint(2, 900))
  time_phrase = rng.choice(_TIMES).format(**fill)
  tail = rng.choice(_TAILS).format(**fill)
  return (f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {obj} {rng.choice(_PLACES)} "
          f"{time_phrase}{tail}.")


def _pseudo_word(word: str, script: str, cache: dict) -> str:
  """A fixed pseudo-word for `word` in `script` ("Beng" or "Latn")."""
  if word not in cache:
    h = zlib.crc32(word.lower().encode())
    syllables = 1 + h % 3
    out = []
    for _ in range(syllables):
      h, c = divmod(h, 64)
      if script == "Beng":
        out.append(_BENGALI_CONSONANTS[c % len(_BENGALI_CONSONANTS)]
                   + _BENGALI_VOWEL_SIGNS[(c // 3) % len(_BENGALI_VOWEL_SIGNS)])
      else:
        out.append(_LATIN_SYLLABLES[c % len(_LATIN_SYLLABLES)])
    cache[word] = "".join(out)
  return cache[word]


def _pseudo_translate(sentence: str, script: str, cache: dict) -> str:
  words = []
  for token in sentence.rstrip(".").split():
    comma = token.endswith(",")
    token = token.rstrip(",")
    if token.isdigit():
      word = token.translate(_BENGALI_DIGITS) if script == "Beng" else token
    else:
      word = _pseudo_word(token, script, cache)
    words.append(word + ("," if comma else ""))
  return " ".join(words) + ("।" if script == "Beng" else ".")


def write_flores(raw_dir: str, seed: int = DEFAULT_SEED,
                 codes: Sequence[str] = ("asm_Beng", "eng_Latn")) -> dict[str, int]:
  """`flores200/{code}.{dev,devtest}`: 997 / 1012 aligned sentences per code.

  Line i of every code's file is the same sentence (English for `eng_Latn`, a
  word-by-word pseudo-translation in the code's script otherwise: `_Beng`
  codes get Bengali script and digits, `_Latn` codes Latin syllables). No
  sentence appears twice across dev and devtest.
  """
  for code in codes:
    if code != "eng_Latn" and not code.endswith(("_Beng", "_Latn")):
      raise ValueError(f"write_flores: no pseudo-script for {code!r} (use *_Beng or *_Latn).")
  rng, seen, counts = _rng(seed, "flores"), set(), {}
  for split, size in FLORES_SIZES.items():
    english = [r["s"] for r in _unique(lambda: {"s": _english_sentence(rng)}, size, "s",
                                       seen)]
    for code in codes:
      cache: dict = {}
      lines = english if code == "eng_Latn" else [
          _pseudo_translate(s, code.rsplit("_", 1)[1], cache) for s in english]
      path = os.path.join(raw_dir, "flores200", f"{code}.{split}")
      _write_lines(path, lines)
      counts[f"flores200/{code}.{split}"] = size
  return counts


# ----------------------------------------------------------------------------
# DialogSum.
# ----------------------------------------------------------------------------

# (topic, what #Person1# wants, the thing discussed, the detail asked about)
_DIALOG_TOPICS = (
    ("booking a hotel", "book a room", "a double room", "the check-in date"),
    ("job interview", "apply for the assistant position", "the job", "the start date"),
    ("shopping", "buy a winter coat", "the coat", "the size"),
    ("doctor's appointment", "see a doctor about a headache", "the appointment",
     "the time"),
    ("renting an apartment", "rent an apartment near the station", "the apartment",
     "the rent"),
    ("restaurant reservation", "reserve a table for dinner", "the table",
     "the number of guests"),
    ("bank account", "open a savings account", "the account", "the minimum deposit"),
    ("travel plans", "plan a trip to the seaside", "the trip", "the departure day"),
    ("car repair", "get the car fixed", "the repair", "the cost"),
    ("library", "borrow some books about history", "the books", "the return date"),
    ("birthday party", "organise a birthday party for Tom", "the party", "the place"),
    ("moving house", "hire a moving company", "the move", "the price"),
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_SMALL_TALK = (
    ("How are you today?", "Fine, thanks. And you?"),
    ("Is it very busy today?", "Not really, it's a quiet day."),
    ("The weather is terrible this week.", "Yes, it has been raining since {day}."),
    ("Have you been here before?", "No, this is my first time."),
    ("Do you need anything else?", "No, I think that's all for now."),
)


def _dialogue(rng: random.Random) -> tuple[str, str, list[str]]:
  """(dialogue, topic, three reference summaries) of one synthetic dialogue."""
  topic, want, thing, detail = _DIALOG_TOPICS[rng.randrange(len(_DIALOG_TOPICS))]
  name = rng.choice(_NAMES)
  day = rng.choice(_DAYS)
  price = rng.randrange(20, 900, 5)
  hour = rng.randint(8, 18)
  turns = [("#Person1#", f"Good morning, {name}. I'd like to {want}."),
           ("#Person2#", f"Certainly. What about {detail}?"),
           ("#Person1#", f"I was thinking of {day}, around {hour} o'clock."),
           ("#Person2#", f"Let me check. Yes, we can do {thing} on {day}. "
                         f"It will be {price} dollars.")]
  for _ in range(rng.randint(0, 4)):
    question, answer = rng.choice(_SMALL_TALK)
    speakers = ("#Person1#", "#Person2#") if rng.random() < 0.5 else ("#Person2#",
                                                                       "#Person1#")
    turns += [(speakers[0], question), (speakers[1], answer.format(day=day))]
  agrees = rng.random() < 0.7
  turns += [("#Person1#", f"{price} dollars? " + (
      "That's fine. I'll take it." if agrees else "That's too expensive for me.")),
            ("#Person2#", "Great, see you then." if agrees else
             "I understand. Maybe next time.")]
  dialogue = "\n".join(f"{who}: {text}" for who, text in turns)
  outcome = (f"#Person2# arranges {thing} for {day} and it costs {price} dollars."
             if agrees else f"#Person1# thinks {price} dollars is too expensive.")
  summaries = [f"#Person1# wants to {want}. {outcome}",
               f"{name} asks #Person2# about {thing} on {day}. " + (
                   "#Person1# agrees to pay." if agrees else "#Person1# refuses."),
               f"#Person1# and #Person2# talk about {thing}; {outcome[0].lower()}"
               f"{outcome[1:]}"]
  return dialogue, topic, summaries


def write_dialogsum(raw_dir: str, seed: int = DEFAULT_SEED) -> dict[str, int]:
  """`dialogsum/{train,validation,test}.csv`: 12,460 / 500 / 1,500 rows.

  Columns id, dialogue, summary, topic as in knkarthick/dialogsum; ids
  `train_{i}`, `dev_{i}`, `test_{i}_{k}` (test: 500 dialogues x 3 summaries);
  dialogues are '#Person1#: ...' / '#Person2#: ...' turns joined by newlines.
  """
  rng, counts = _rng(seed, "dialogsum"), {}
  folder = os.path.join(raw_dir, "dialogsum")
  os.makedirs(folder, exist_ok=True)
  for split, size in DIALOGSUM_SIZES.items():
    path = os.path.join(folder, f"{split}.csv")
    with open(path, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["id", "dialogue", "summary", "topic"])
      if split == "test":
        for i in range(size // DIALOGSUM_TEST_SUMMARIES):
          dialogue, topic, summaries = _dialogue(rng)
          for k, summary in enumerate(summaries[:DIALOGSUM_TEST_SUMMARIES], start=1):
            writer.writerow([f"test_{i}_{k}", dialogue, summary, topic])
      else:
        prefix = "train" if split == "train" else "dev"
        for i in range(size):
          dialogue, topic, summaries = _dialogue(rng)
          writer.writerow([f"{prefix}_{i}", dialogue, summaries[0], topic])
    counts[f"dialogsum/{split}.csv"] = size
  return counts


# ----------------------------------------------------------------------------
# GSM8K.
# ----------------------------------------------------------------------------

_ITEMS = ("clips", "apples", "stickers", "cupcakes", "marbles", "pencils", "cookies",
          "books", "shells", "cards")


def _gsm8k_problem(rng: random.Random) -> dict:
  """One word problem: {"question", "answer"} with GSM8K's answer layout."""
  name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
  kind = rng.randrange(6)
  if kind == 0:
    a = 2 * rng.randint(5, 120)
    h, total = a // 2, a + a // 2
    q = (f"{name} sold {item} to {a} of her friends in April, and then she sold half as "
         f"many {item} in May. How many {item} did {name} sell altogether in April and "
         "May?")
    steps = [f"{name} sold {a}/2 = <<{a}/2={h}>>{h} {item} in May.",
             f"{name} sold {a}+{h} = <<{a}+{h}={total}>>{total} {item} altogether in "
             "April and May."]
  elif kind == 1:
    rate = rng.randint(6, 40)
    step = 60 // math.gcd(rate, 60)
    minutes = step * rng.randint(1, max(1, 180 // step))
    per_minute = rate / 60
    total = rate * minutes // 60
    q = (f"{name} earns ${rate} an hour for babysitting. Yesterday, she just did "
         f"{minutes} minutes of babysitting. How much did she earn?")
    steps = [f"{name} earns {rate}/60 = $<<{rate}/60={per_minute:g}>>{per_minute:g} per "
             "minute.",
             f"Working {minutes} minutes, she earned {per_minute:g} x {minutes} = "
             f"$<<{per_minute:g}*{minutes}={total}>>{total}."]
  elif kind == 2:
    a, b, c = rng.randint(3, 60), rng.randint(2, 9), rng.randint(3, 24)
    d = rng.randint(1, a + b * c - 1)
    bought, have, total = b * c, a + b * c, a + b * c - d
    q = (f"{name} has {a} {item}. She buys {b} packs of {item} with {c} {item} in each "
         f"pack and then gives {d} {item} to her brother. How many {item} does {name} "
         "have now?")
    steps = [f"She buys {b} x {c} = <<{b}*{c}={bought}>>{bought} {item}.",
             f"So she has {a} + {bought} = <<{a}+{bought}={have}>>{have} {item}.",
             f"After giving {d} away, she has {have} - {d} = <<{have}-{d}={total}>>"
             f"{total} {item}."]
  elif kind == 3:
    price, count = rng.randint(2, 25), rng.randint(2, 12)
    cost = price * count
    bill = next(b for b in (10, 20, 50, 100, 200, 500) if b > cost)
    total = bill - cost
    q = (f"A shop sells notebooks for ${price} each. {name} buys {count} notebooks and "
         f"pays with a ${bill} bill. How much change does {name} get?")
    steps = [f"The notebooks cost {count} x ${price} = $<<{count}*{price}={cost}>>{cost}.",
             f"{name} gets ${bill} - ${cost} = $<<{bill}-{cost}={total}>>{total} in "
             "change."]
  elif kind == 4:
    p, d, r, e = (rng.randint(5, 40), rng.randint(2, 7), rng.randint(5, 40),
                  rng.randint(2, 7))
    first, second = p * d, r * e
    read = first + second
    book = read + rng.randint(1, 300)
    total = book - read
    q = (f"{name} is reading a {book}-page book. She reads {p} pages a day for {d} days "
         f"and then {r} pages a day for {e} days. How many pages are left to read?")
    steps = [f"First she reads {p} x {d} = <<{p}*{d}={first}>>{first} pages.",
             f"Then she reads {r} x {e} = <<{r}*{e}={second}>>{second} pages.",
             f"In total she reads {first} + {second} = <<{first}+{second}={read}>>{read} "
             "pages.",
             f"So {book} - {read} = <<{book}-{read}={total}>>{total} pages are left."]
  else:
    students = 20 * rng.randint(1, 20)
    pct = rng.choice((10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80))
    girls = students * pct // 100
    total = students - girls
    q = (f"There are {students} students in a school club. {pct}% of them are girls. "
         "How many boys are in the club?")
    steps = [f"The girls are {pct}/100 x {students} = <<{pct}/100*{students}={girls}>>"
             f"{girls} students.",
             f"So there are {students} - {girls} = <<{students}-{girls}={total}>>{total} "
             "boys."]
  return {"question": q, "answer": "\n".join(steps) + f"\n#### {total}"}


def write_gsm8k(raw_dir: str, seed: int = DEFAULT_SEED) -> dict[str, int]:
  """`gsm8k/{train,test}.jsonl`: 7,473 / 1,319 rows {"question", "answer"}.

  Answers are step lines with "<<expr=value>>" annotations and a final
  "#### N" (an integer, as in GSM8K); no question is repeated across files.
  """
  rng, seen, counts = _rng(seed, "gsm8k"), set(), {}
  for split, size in GSM8K_SIZES.items():
    rows = _unique(lambda: _gsm8k_problem(rng), size, "question", seen)
    counts[f"gsm8k/{split}.jsonl"] = _write_jsonl(
        os.path.join(raw_dir, "gsm8k", f"{split}.jsonl"), rows)
  return counts


# ----------------------------------------------------------------------------
# Competition-style math (UltraInteract Math_CoT, MATH-500).
# ----------------------------------------------------------------------------

_COS_VALUES = {0: "1", 30: "\\frac{\\sqrt{3}}{2}", 45: "\\frac{\\sqrt{2}}{2}",
               60: "\\frac{1}{2}", 90: "0", 120: "-\\frac{1}{2}", 180: "-1"}


def _fraction(p: int, q: int) -> str:
  """p/q in lowest terms as MATH writes it: "3", "-\\frac{2}{5}"."""
  g = math.gcd(p, q)
  p, q = p // g, q // g
  if q < 0:
    p, q = -p, -q
  if q == 1:
    return str(p)
  sign = "-" if p < 0 else ""
  return f"{sign}\\frac{{{abs(p)}}}{{{q}}}"


def _math_problem(rng: random.Random) -> dict:
  """{"problem", "steps", "answer", "subject", "level"}; answer in MATH's style."""
  kind = rng.randrange(7)
  if kind == 0:
    a, b, c = rng.randint(2, 12), rng.randint(-30, 30), rng.randint(-40, 60)
    answer = _fraction(c - b, a)
    problem = f"Solve for $x$: ${a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}$."
    steps = [f"Subtract {b} from both sides: ${a}x = {c - b}$.",
             f"Divide both sides by {a}: $x = {answer}$."]
    subject, level = "Algebra", 1 + (answer.find("frac") >= 0)
  elif kind == 1:
    a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(1, 200)
    answer = str(a * b - c)
    problem = f"What is the value of ${a} \\cdot {b} - {c}$?"
    steps = [f"First multiply: ${a} \\cdot {b} = {a * b}$.",
             f"Then subtract: ${a * b} - {c} = {answer}$."]
    subject, level = "Prealgebra", 1
  elif kind == 2:
    g = rng.randint(2, 30)
    a, b = g * rng.randint(2, 20), g * rng.randint(2, 20)
    answer = str(math.gcd(a, b))
    problem = f"What is the greatest common divisor of ${a}$ and ${b}$?"
    steps = [f"By the Euclidean algorithm, $\\gcd({a}, {b}) = \\gcd({b}, {a % b})$.",
             f"Continuing, the greatest common divisor is ${answer}$."]
    subject, level = "Number Theory", 2
  elif kind == 3:
    red, blue = rng.randint(1, 20), rng.randint(1, 20)
    answer = _fraction(red, red + blue)
    problem = (f"A bag has {red} red marbles and {blue} blue marbles. One marble is "
               "drawn at random. What is the probability that it is red? Express your "
               "answer as a common fraction.")
    steps = [f"There are ${red} + {blue} = {red + blue}$ marbles in total.",
             f"So the probability is $\\frac{{{red}}}{{{red + blue}}} = {answer}$."]
    subject, level = "Counting & Probability", 2
  elif kind == 4:
    r, s = rng.randint(-12, 12), rng.randint(-12, 12)
    total, product = r + s, r * s
    answer = str(total)
    problem = (f"What is the sum of the roots of $x^2 {'-' if total >= 0 else '+'} "
               f"{abs(total)}x {'+' if product >= 0 else '-'} {abs(product)} = 0$?")
    steps = ["By Vieta's formulas, the sum of the roots of $x^2 + bx + c = 0$ is $-b$.",
             f"Here $b = {-total}$, so the sum is ${answer}$."]
    subject, level = "Intermediate Algebra", 3
  elif kind == 5:
    base, height = rng.randint(2, 30), rng.randint(2, 30)
    answer = _fraction(base * height, 2)
    problem = (f"A triangle has a base of {base} units and a height of {height} units. "
               "What is its area, in square units?")
    steps = ["The area of a triangle is $\\frac{1}{2} \\cdot \\text{base} \\cdot "
             "\\text{height}$.",
             f"So the area is $\\frac{{1}}{{2}} \\cdot {base} \\cdot {height} = {answer}$."]
    subject, level = "Geometry", 1 + (base * height % 2)
  else:
    angle = rng.choice(sorted(_COS_VALUES))
    shift = 360 * rng.randint(0, 3)
    answer = _COS_VALUES[angle]
    problem = f"Compute $\\cos {angle + shift}^\\circ$."
    steps = [f"Since cosine has period $360^\\circ$, $\\cos {angle + shift}^\\circ = "
             f"\\cos {angle}^\\circ$." if shift else
             f"We recall the value of $\\cos {angle}^\\circ$.",
             f"Therefore $\\cos {angle}^\\circ = {answer}$."]
    subject, level = "Precalculus", 2 + (shift > 0)
  return dict(problem=problem, steps=steps, answer=answer, subject=subject,
              level=min(level, 5))


def write_math500(raw_dir: str, seed: int = DEFAULT_SEED) -> dict[str, int]:
  """`math500/test.jsonl`: 500 rows {problem, solution, answer, subject, level,
  unique_id}; solutions end with "$\\boxed{answer}$"."""
  rng = _rng(seed, "math500")
  rows = []
  for i, p in enumerate(_unique(lambda: _math_problem(rng), MATH500_ROWS, "problem",
                                set())):
    last, tail = p["steps"][-1], f"{p['answer']}$."
    assert last.endswith(tail), last  # Every step list ends "... = {answer}$."
    solution = " ".join(p["steps"][:-1] + [last[:-len(tail)] + f"\\boxed{{{p['answer']}}}$."])
    slug = p["subject"].lower().replace(" & ", "_").replace(" ", "_")
    rows.append({"problem": p["problem"], "solution": solution, "answer": p["answer"],
                 "subject": p["subject"], "level": p["level"],
                 "unique_id": f"test/{slug}/{100 + 7 * i}.json"})
  return {"math500/test.jsonl": _write_jsonl(
      os.path.join(raw_dir, "math500", "test.jsonl"), rows)}


def _other_ultrainteract_row(rng: random.Random, i: int) -> dict:
  """A Coding / Math_PoT / Logic row (the Math_CoT filter must drop these)."""
  task = ("Coding", "Math_PoT", "Logic")[i % 3]
  n = rng.randint(2, 99)
  if task == "Coding":
    instruction = ("Write Python code to solve the task:\nGiven a list of integers, "
                   f"print the sum of the ones divisible by {n}.")
    response = ("```python\nnums = list(map(int, input().split()))\n"
                f"print(sum(x for x in nums if x % {n} == 0))\n```")
  elif task == "Math_PoT":
    p = _math_problem(rng)
    instruction = ("Tool available:\n[1] Python interpreter\nWhen you send a message "
                   "containing Python code to python, it will be executed in a stateful "
                   "Jupyter notebook environment.\nSolve the following math problem "
                   f"step-by-step.\n{p['problem']}")
    response = f"Step 1: {p['steps'][0]}\n```python\n# Step 2: compute it\nprint({n})\n```"
  else:
    instruction = ("Solve the following problem step-by-step:\nGiven the context and "
                   "corresponding question, choose the correct answer from the options."
                   f"\n\nContext: \nA survey of {n} towns found more libraries than "
                   "schools.\n\nQuestion: \nWhich is supported?\n\nOptions: \nA. More "
                   "schools.\nB. More libraries.\n\n")
    response = "Step 1: The context says there are more libraries.\nAnswer:\nB"
  return {"task": task, "dataset": {"Coding": "codecontest", "Math_PoT": "mathqa",
                                    "Logic": "reclor"}[task],
          "instruction": instruction, "response": response}


def write_ultrainteract(raw_dir: str, seed: int = DEFAULT_SEED,
                        math_cot_rows: int = ULTRAINTERACT_MATH_COT_ROWS,
                        other_rows: int = ULTRAINTERACT_OTHER_ROWS) -> dict[str, int]:
  """`ultrainteract/ultrainteract_sft.jsonl`: Math_CoT rows mixed with others.

  Fields id, parent_id, task, dataset, instruction, response as in
  openbmb/UltraInteract_sft. Math_CoT instructions start with the "Solve the
  following math problem step-by-step ... \\boxed{Your Answer}" preamble and
  responses end with "Answer:\\n\\boxed{...}". One row in every
  (math_cot_rows + other_rows) / other_rows is a Coding / Math_PoT / Logic row.
  """
  rng = _rng(seed, "ultrainteract")
  math_rows = _unique(lambda: _math_problem(rng), math_cot_rows, "problem", set())
  every = (math_cot_rows + other_rows) / max(other_rows, 1)

  def rows():
    m = o = 0
    for i in range(math_cot_rows + other_rows):
      other = o < other_rows and (m >= math_cot_rows or (i + 1) >= every * (o + 1))
      if other:
        row = _other_ultrainteract_row(rng, o)
        o += 1
      else:
        p = math_rows[m]
        m += 1
        steps = "\n".join(f"Step {k}: {s}" for k, s in enumerate(p["steps"], start=1))
        row = {"task": "Math_CoT", "dataset": "MATH",
               "instruction": MATH_COT_PREAMBLE + p["problem"],
               "response": f"{steps}\n\nAnswer:\n\\boxed{{{p['answer']}}}"}
      parent = f"{zlib.crc32(row['instruction'].encode()):08x}{i:04x}"
      yield {"id": f"{parent}_1_1", "parent_id": parent, **row}

  count = _write_jsonl(os.path.join(raw_dir, "ultrainteract", "ultrainteract_sft.jsonl"),
                       rows())
  return {"ultrainteract/ultrainteract_sft.jsonl": count}


def sample_texts(per_kind: int = 200, seed: int = DEFAULT_SEED) -> list[str]:
  """In-memory text in the fixtures' styles (English and pseudo-Assamese
  sentences, dialogues, summaries, word problems, LaTeX math), e.g. to train a
  small tokenizer; nothing is written."""
  rng, cache, texts = _rng(seed, "sample_texts"), {}, []
  for _ in range(per_kind):
    english = _english_sentence(rng)
    dialogue, _, summaries = _dialogue(rng)
    gsm, math_problem = _gsm8k_problem(rng), _math_problem(rng)
    texts += [english, _pseudo_translate(english, "Beng", cache), dialogue, summaries[0],
              gsm["question"], gsm["answer"], math_problem["problem"],
              " ".join(math_problem["steps"]) + f" \\boxed{{{math_problem['answer']}}}"]
  return texts


# ----------------------------------------------------------------------------
# Tasks -> writers, and the CLI.
# ----------------------------------------------------------------------------

WRITERS: dict[str, tuple[Callable[..., dict[str, int]], ...]] = {
    "translation": (write_flores,),
    "summarization": (write_dialogsum,),
    "gsm8k": (write_gsm8k,),
    "math": (write_ultrainteract, write_math500),
    "math_eval": (write_math500,),
}
PAPER_TASKS = ("translation", "summarization", "gsm8k", "math")


def write_paper_fixtures(raw_dir: str, tasks: Sequence[str] | None = None,
                         seed: int = DEFAULT_SEED) -> dict[str, int]:
  """Writes the raw files of `tasks` (default: all paper tasks) into `raw_dir`.

  Returns:
    {"<source folder>/<file>": rows written} for every file.
  """
  tasks = PAPER_TASKS if tasks is None else tuple(tasks)
  unknown = sorted(set(tasks) - set(WRITERS))
  if unknown:
    raise ValueError(f"No fixtures for tasks {unknown}; known: {sorted(WRITERS)}.")
  counts, done = {}, set()
  for task in tasks:
    for writer in WRITERS[task]:
      if writer not in done:
        counts.update(writer(raw_dir, seed=seed))
        done.add(writer)
  return counts


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description="Write synthetic raw files for the paper tasks (real formats/sizes).")
  parser.add_argument("--out", required=True, help="raw_dir to write into")
  parser.add_argument("--task", action="append", choices=sorted(WRITERS),
                      help="task to write (repeatable; default: all paper tasks)")
  parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
  args = parser.parse_args(argv)
  start = time.perf_counter()
  counts = write_paper_fixtures(args.out, args.task, seed=args.seed)
  for path, rows in counts.items():
    print(f"{os.path.join(args.out, path)}: {rows} rows")
  print(f"{len(counts)} files in {time.perf_counter() - start:.2f} s; use "
        f"get_task(name, raw_dir={args.out!r}) or $SKD_RAW_DATA_DIR={args.out}")


if __name__ == "__main__":
  main()
