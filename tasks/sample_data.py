"""Small sample data sets, generated deterministically with no download ("try it in two minutes").

Generic generators (also used by the tests): ``digits``, ``shapes``, ``titanic_like_csv``,
``learnable_tabular_csv`` and ``text_corpus``; ``sample_files(task_id)`` assembles the files a
predefined task offers on its page (images as PNG files plus a ``labels.csv`` of
"filename,label" lines; a CSV for tabular tasks; a text file for text tasks).

Every generator takes a ``seed`` and gives the same bytes for the same arguments, so the
cached files under ``media/samples/`` never need invalidating except when ``GENERATOR_VERSION``
changes (the cache folder includes it).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # Pillow is imported where images are drawn: the web server loads this module for its URLs
    from PIL import Image, ImageDraw

GENERATOR_VERSION = 1

LabelledImage = tuple["Image.Image", str]


# --------------------------------------------------------------------------------------------
# Images

def digits(n: int, size: int = 28, seed: int = 0) -> list[LabelledImage]:
    """``n`` grayscale images of the digits 0-9 (cycling), white on black like MNIST.

    Drawn with Pillow's built-in scalable font at a random size, offset, rotation and stroke
    width, then slightly blurred, so no two images are alike.
    """
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    images: list[LabelledImage] = []
    for i in range(n):
        label = str(i % 10)
        scale = 4  # draw large, then shrink: smooth edges
        big = size * scale
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        font = ImageFont.load_default(size=int(big * rng.uniform(0.6, 0.8)))
        stroke = int(rng.integers(0, 2 * scale))
        cx = big / 2 + rng.uniform(-0.08, 0.08) * big
        cy = big / 2 + rng.uniform(-0.08, 0.08) * big
        draw.text((cx, cy), label, fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255)
        canvas = canvas.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        image = canvas.resize((size, size), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.4))
        images.append((image, label))
    return images


def _polygon(kind: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if kind == "triangle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]  # diamond


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, colour: tuple, size: int) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(1, round(r / 3))
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind in ("triangle", "diamond"):
        draw.polygon(_polygon(kind, cx, cy, r), fill=colour)
    elif kind == "ring":
        draw.ellipse(box, outline=colour, width=width)
    elif kind == "frame":
        draw.rectangle(box, outline=colour, width=width)
    elif kind == "cross":
        draw.line((cx - r, cy, cx + r, cy), fill=colour, width=width)
        draw.line((cx, cy - r, cx, cy + r), fill=colour, width=width)
    elif kind == "hstripes":
        for y in range(0, size, max(2, size // 6)):
            draw.rectangle((0, y, size, y + max(1, size // 12)), fill=colour)
    elif kind == "vstripes":
        for x in range(0, size, max(2, size // 6)):
            draw.rectangle((x, 0, x + max(1, size // 12), size), fill=colour)
    elif kind == "checker":
        step = max(2, size // 4)
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), fill=colour)
    else:
        raise ValueError(f"Unknown shape {kind!r}; known: {', '.join(SHAPES)}.")


SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "ring", "hstripes", "vstripes", "diamond",
                           "checker", "frame")


def shapes(n: int, size: int = 16, labels: Sequence[str] = ("circle", "square"), seed: int = 0) -> list[LabelledImage]:
    """``n`` RGB images of visually distinct shapes, one kind per label (cycling through ``labels``).

    A label that names a shape of ``SHAPES`` gets that shape; other labels (e.g. a task's
    "child" / "adult") get the shapes of ``SHAPES`` in order. Each image has a random dark
    background, a random bright colour, and a jittered centre and radius.
    """
    if len(labels) > len(SHAPES):
        raise ValueError(f"At most {len(SHAPES)} labels can get distinct shapes, got {len(labels)}.")
    free = [s for s in SHAPES if s not in labels]
    kinds = {label: label if label in SHAPES else free.pop(0) for label in labels}
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    images: list[LabelledImage] = []
    for i in range(n):
        label = labels[i % len(labels)]
        background = tuple(int(v) for v in rng.integers(0, 60, 3))
        colour = tuple(int(v) for v in rng.integers(150, 256, 3))
        image = Image.new("RGB", (size, size), background)
        r = size * rng.uniform(0.28, 0.38)
        cx = size / 2 + rng.uniform(-0.08, 0.08) * size
        cy = size / 2 + rng.uniform(-0.08, 0.08) * size
        _draw_shape(ImageDraw.Draw(image), kinds[label], cx, cy, r, colour, size)
        images.append((image, label))
    return images


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Tabular

def _csv(header: Sequence[str], rows: list[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


_FIRST = ["James", "Mary", "John", "Anna", "William", "Elizabeth", "George", "Margaret", "Thomas", "Ellen",
          "Charles", "Alice", "Frederick", "Edith", "Arthur", "Bridget", "Henry", "Kate", "Patrick", "Ida"]
_LAST = ["Smith", "Brown", "Kelly", "Andersson", "Murphy", "Johansson", "Davies", "Carter", "Nilsson", "Walsh",
         "Harris", "Olsen", "Ryan", "Turner", "Larsson", "Byrne", "Wright", "Moore", "Hansen", "Lewis"]


def titanic_like_csv(n: int = 400, seed: int = 0) -> str:
    """A passenger list shaped like Kaggle's Titanic train.csv (same columns), with invented people.

    Distributions follow the real list roughly: 24/21/55 % in 1st/2nd/3rd class, ages by class
    with about 20 % missing, mostly travelling alone, fares by class and family size. Survival
    depends on class, age, fare and siblings/spouses aboard through a logistic model, so the five
    input columns of the ``titanic`` task carry most of the signal (about 85 % accuracy is reachable;
    about 38 % survive, as on the real list).
    """
    rng = np.random.default_rng(seed)
    rows: list[list[object]] = []
    for i in range(n):
        pclass = int(rng.choice([1, 2, 3], p=[0.24, 0.21, 0.55]))
        sex = "female" if rng.random() < 0.35 else "male"
        age = float(np.clip(rng.normal({1: 38, 2: 30, 3: 25}[pclass], {1: 14, 2: 13, 3: 12}[pclass]), 0.42, 80))
        age = round(age) if age >= 1 else round(age, 2)
        sibsp = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.68, 0.23, 0.03, 0.02, 0.02, 0.02]))
        parch = int(rng.choice([0, 1, 2, 3], p=[0.76, 0.13, 0.09, 0.02]))
        fare = float(rng.lognormal(math.log({1: 60.0, 2: 14.0, 3: 8.0}[pclass]), 0.45)) * (1 + 0.35 * (sibsp + parch))
        logit = 2.0 - 1.5 * (pclass - 1) - 0.045 * (age - 30) + 0.012 * (fare - 30) - 0.7 * sibsp
        logit += 0.5 if sex == "female" else -0.2
        survived = int(rng.random() < 1 / (1 + math.exp(-2.5 * logit)))
        missing_age = rng.random() < 0.2
        surname, first = _LAST[int(rng.integers(len(_LAST)))], _FIRST[int(rng.integers(len(_FIRST)))]
        name = f"{surname}, {'Mrs.' if sex == 'female' else 'Mr.'} {first}"
        has_cabin = pclass == 1 and rng.random() < 0.8
        cabin = f"{'ABCDE'[int(rng.integers(5))]}{int(rng.integers(1, 130))}" if has_cabin else ""
        ticket = f"{int(rng.integers(10000, 400000))}"
        embarked = str(rng.choice(["S", "C", "Q"], p=[0.72, 0.19, 0.09]))
        rows.append([i + 1, survived, pclass, name, sex, "" if missing_age else age, sibsp, parch, ticket,
                     f"{fare:.4f}", cabin, embarked])
    header = ["PassengerId", "Survived", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare", "Cabin",
              "Embarked"]
    return _csv(header, rows)


def learnable_tabular_csv(n: int = 300, columns: Sequence[str] = ("a", "b", "c", "d"), seed: int = 0,
                          target: str = "label") -> str:
    """Numeric columns and a 0/1 ``target`` that a linear rule with a clear margin decides.

    Features are normal with different scales and offsets; the label is 1 when a fixed weighted
    sum is positive, and points too close to the boundary are pushed away, so a small model
    reaches well above 90 % accuracy.
    """
    rng = np.random.default_rng(seed)
    k = len(columns)
    scales = np.linspace(1.0, 3.0, k)
    offsets = np.linspace(-1.0, 1.0, k)
    weights = np.where(np.arange(k) % 2 == 0, 1.0, -0.7)
    z = rng.normal(size=(n, k))
    score = z @ weights
    z += np.outer(np.sign(score + (score == 0)) * 0.6, weights / np.linalg.norm(weights))  # widen the margin
    labels = (z @ weights > 0).astype(int)
    x = z * scales + offsets
    rows = [[*(f"{v:.4f}" for v in row), int(y)] for row, y in zip(x, labels, strict=True)]
    return _csv([*columns, target], rows)


# --------------------------------------------------------------------------------------------
# Text

_CORPUS = """\
The Lighthouse Keeper's Notebook

Monday. The wind came round to the north before dawn and brought the smell of snow with it. I climbed the
ninety-one steps with the oil can and found the lamp still burning steadily, which pleased me more than it
should have. A lamp does not know it is being watched, and yet I always feel it tries harder when I am near.

The supply boat is late again. Marta, who rows it across from the harbour, says the sea between us and the
town has moods, and that a sensible person waits for the good ones. I have flour for a week, potatoes for two,
and tea for as long as I am careful. The goats do not care about any of this. They eat the thistles on the
south slope and look at me as if I had invented the weather to annoy them.

Tuesday. I mended the rain gauge and counted the birds on the long rock: eleven cormorants, four gulls and a
heron who stood so still that I took him for a post until he walked away. In the afternoon I wrote letters I
will not send until the boat comes. Writing a letter that cannot leave is a strange comfort. The words wait in
the drawer like passengers on a quay, patient, a little cold, sure of where they are going.

Wednesday. Fog. The horn sounded every thirty seconds from noon until midnight, and between the blasts the
island was so quiet that I could hear the kettle thinking about boiling. Fog makes the world small. There is
the tower, the cottage, the path between them, and a grey wall beyond which anything might be standing. I read
by the stove and fell asleep with the book open on my chest.

Thursday. Clear and bright. From the gallery I could see the whole coast, the church spire in the town, the
white line of surf on the shoals, even the smoke from the bakery chimney. Ships passed in the morning: a
trawler heading out, a small cargo steamer low in the water, and a yacht with a red sail that tacked back and
forth as if its crew could not decide where to go. I waved. Nobody waved back, but I do not hold it against
them. From a deck a lighthouse is a landmark, not a house, and one does not wave at landmarks.

Friday. The boat came at last. Marta brought flour, lamp oil, a newspaper four days old and a jar of honey
from her aunt, who keeps bees behind the school. She stayed for tea and told me the news: the harbour wall is
to be repaired in spring, the baker's daughter is to be married, and the new schoolmaster plays the violin
badly but with great enthusiasm. I gave her my letters. She tucked them inside her coat and promised to post
them before the evening train.

Saturday. I painted the railing on the gallery where the salt had eaten through. Paint, like patience, goes on
in thin coats. In the evening I sat on the steps with a cup of tea and watched the beam sweep across the water,
once every ten seconds, steady as a heartbeat. Somewhere out there a captain is counting the flashes and
knowing exactly where he is. That is the whole purpose of the light: not to be admired, but to be counted.

Sunday. Rain from the west, soft and warm. I baked bread with the new flour and it rose beautifully. The goats
sheltered in the lee of the wall and the heron came back to stand on his rock. I have decided he is my
neighbour. Tomorrow the week begins again: the oil, the steps, the gauge, the log. I find I do not mind. A life
made of small tasks done well is not a small life.
"""


def text_corpus() -> str:
    """A short English text written for this project (about 4 kB): a lighthouse keeper's week."""
    return _CORPUS


# --------------------------------------------------------------------------------------------
# Per predefined task

def _image_files(images: list[LabelledImage], prefix: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    rows: list[list[str]] = []
    for i, (image, label) in enumerate(images):
        name = f"{prefix}_{i:03d}_{label}.png"
        files[name] = png_bytes(image)
        rows.append([name, label])
    files["labels.csv"] = _csv(["filename", "label"], rows).encode()
    return files


def _labels(task_id: str) -> list[str]:
    from importlib import import_module

    return list(import_module(f"tasks.default_tasks.{task_id}").LABELS)


_GENERATORS: dict[str, Callable[[], dict[str, bytes]]] = {
    "mnist": lambda: _image_files(digits(100, size=28, seed=1), "digit"),
    "cifar10": lambda: _image_files(shapes(20, size=32, labels=_labels("cifar10"), seed=2), "object"),
    "simple_face": lambda: _image_files(shapes(20, size=200, labels=_labels("simple_face"), seed=3), "face"),
    "lus_covid": lambda: _image_files(shapes(40, size=100, labels=_labels("lus_covid"), seed=4), "frame"),
    "titanic": lambda: {"titanic_train.csv": titanic_like_csv(400, seed=5).encode()},
    "wikitext": lambda: {"lighthouse.txt": text_corpus().encode()},
}

MODES: dict[str, str] = {"image": "csv", "tabular": "tabular", "text": "text"}


def has_sample_data(task_id: str) -> bool:
    return task_id in _GENERATORS


def sample_files(task_id: str) -> dict[str, bytes]:
    """The sample files of a predefined task, by file name; ``KeyError`` when it has none."""
    try:
        generator = _GENERATORS[task_id]
    except KeyError:
        raise KeyError(f"No sample data generator for task {task_id!r}; "
                       f"there is one for {', '.join(sorted(_GENERATORS))}.") from None
    return generator()
