"""Write a small 3-class Marathi sentiment task as separate train/dev/test CSVs.

    python experiments/toy_sentiment.py /tmp/sentiment
    python experiments/run.py --train-file /tmp/sentiment/reviews_train.csv \\
        --eval-file /tmp/sentiment/reviews_dev.csv --test-file /tmp/sentiment/reviews_test.csv \\
        --text-column comment --label-column stars --sparsity 0.25 --distill

It exists to show that the pipeline runs, with flags only, on a task other than news topics:
columns id, comment, stars; labels -1/0/1. The 180 short reviews are made from templates
(10 things x 6 opinion words per class x a random ending), written for this project; the
training file repeats 5 of its rows and the dev file 3 training texts, as real files do, so a
run shows its duplicate and overlap handling. Too regular to judge a model by.
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path


if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli_args import Parser, run_script, whole_number
from jaxprune.errors import JaxpruneError  # noqa: E402

THINGS = ("हा फोन", "हा चित्रपट", "हे हॉटेल", "हे पुस्तक", "ही बस सेवा", "हे जेवण", "ही शाळा", "हे दुकान", "हा रस्ता",
          "ही मालिका")
OPINIONS = {
    "1": ("खूप छान", "उत्तम", "अप्रतिम", "आवडला", "मस्त", "सुंदर"),
    "0": ("ठीक", "साधारण", "सामान्य", "बरा", "चालण्यासारखा", "मध्यम"),
    "-1": ("वाईट", "निराशाजनक", "खराब", "भयंकर", "कंटाळवाणा", "त्रासदायक"),
}
ENDINGS = ("आहे", "वाटला", "होता", "निघाला", "आहे असे मला वाटते", "आहे, पुन्हा विचार करा")


def write_task(folder: str | Path, seed: int = 7) -> dict[str, Path]:
    rng = random.Random(seed)
    rows = [(f"{thing} {opinion} {rng.choice(ENDINGS)}", stars)
            for stars, opinions in OPINIONS.items() for thing in THINGS for opinion in opinions]
    rng.shuffle(rows)
    n = len(rows)
    train, dev, test = rows[: n * 6 // 10], rows[n * 6 // 10: n * 8 // 10], rows[n * 8 // 10:]
    train += train[:5]  # duplicate rows
    dev += train[5:8]  # dev texts that also occur in training
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in (("train", train), ("dev", dev), ("test", test)):
        paths[name] = folder / f"reviews_{name}.csv"
        with open(paths[name], "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "comment", "stars"])
            writer.writerows((i, text, stars) for i, (text, stars) in enumerate(part))
    return paths


def main(argv=None) -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("folder", help="where the three CSVs are written (created if missing)")
    parser.add_argument("--seed", type=whole_number(0), default=7, help="seed of the endings and the order")
    args = parser.parse_args(argv)

    def write() -> None:
        try:
            paths = write_task(args.folder, seed=args.seed)
        except OSError as err:
            raise JaxpruneError(f"cannot write to {args.folder} ({err.strerror}); pass a writable folder") from None
        for path in paths.values():
            print(path)

    return run_script(write, parser=parser)


if __name__ == "__main__":
    from experiments.cli_args import exit_process

    exit_process(main())
