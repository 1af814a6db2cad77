"""Property-based tests (hypothesis) of the CSV loader: generated files load exactly as an independent
oracle says, or fail with one JaxpruneError line; never a traceback of another exception (issue #13).

Three properties, each counting the files it writes (``FILES``):

* structured tables (random headers, cells, labels, quoting, delimiter, line ends, encodings) against
  an oracle that decodes the bytes by the documented rules, reads them back with :mod:`csv` from a
  ``newline=""`` stream, and cleans, collapses and canonicalises the rows itself;
* raw bytes (arbitrary, and mutated valid files): a load or one clear error;
* splits of ``load_files`` (a lone file, or train with eval/test files sharing texts): no leakage,
  a partition of the distinct texts, per-class eval counts, label ids in range, or one clear error.
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import io
import re
import sys
import tempfile
import unicodedata
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jaxprune import data
from jaxprune.errors import JaxpruneError

pytestmark = pytest.mark.slow  # 550 generated files; tests/test_data.py is the data's fast lane

STRUCTURED_EXAMPLES, RAW_EXAMPLES, SPLIT_EXAMPLES = 250, 200, 100
FILES: collections.Counter = collections.Counter()  # files written, per property
OUTCOMES: collections.Counter = collections.Counter()  # (property, "loaded" | "refused: why" | ...) per example

# The documented column names (compared stripped and case-insensitively), in order of preference.
TEXT_NAMES = ("text", "sentence", "headline", "content", "review", "tweet")
LABEL_NAMES = ("label", "labels", "category", "class", "topic", "sentiment", "target")
DEFAULT_FIELD_LIMIT = 131_072  # the csv module's; the huge cells below are longer


# --- the oracle ---------------------------------------------------------------------------------------


class Invalid(Exception):
    """The oracle's verdict that the loader must refuse a file; ``args[0]`` is a word its message holds."""


@dataclasses.dataclass
class Expected:
    texts: list[str]
    labels: list[str]
    keys: list[str]
    header_rows: int = 0
    empty_rows: int = 0
    unlabelled_rows: int = 0
    duplicate_rows: int = 0
    conflicts: int = 0


def _key(text: str) -> str:
    return " ".join(text.split())


def _decoded(payload: bytes) -> str:
    """UTF-16 when the bytes start with its BOM, else UTF-8 less one leading BOM (the documented rule)."""
    if payload[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        try:
            return payload.decode("utf-16")
        except UnicodeDecodeError:
            raise Invalid("UTF-16") from None
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("UTF-8") from None
    return text.removeprefix("\ufeff")


def _csv_rows(text: str, delimiter: str) -> list[list[str]]:
    """What :mod:`csv` reads from the text as from a file opened with ``newline=""``."""
    old_limit = csv.field_size_limit(sys.maxsize)
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error:
        raise Invalid("readable") from None
    finally:
        csv.field_size_limit(old_limit)


def _column(header: list[str], wanted: str | None, candidates: tuple[str, ...]) -> int:
    names = [name.strip().lower() for name in header]
    for name in [wanted.strip().lower()] if wanted is not None else candidates:
        if name in names:
            return names.index(name)
    raise Invalid("column")


def _majority(labels: list[str]) -> str:
    """The most frequent label; among equally frequent ones, the first seen."""
    counts = collections.Counter(labels)
    return next(label for label in labels if counts[label] == max(counts.values()))


def expected_table(payload: bytes, suffix: str, text_column=None, label_column=None) -> Expected:
    rows = [row for row in _csv_rows(_decoded(payload), "\t" if suffix == ".tsv" else ",")
            if any(cell.strip() for cell in row)]  # fmt: skip
    if not rows:
        raise Invalid("empty")
    header = [cell.strip() for cell in rows[0]]
    text_col, label_col = _column(header, text_column, TEXT_NAMES), _column(header, label_column, LABEL_NAMES)
    if text_col == label_col:
        raise Invalid("both")
    found = Expected([], [], [])
    groups: dict[str, tuple[str, list[str]]] = {}
    for row in rows[1:]:
        text = row[text_col].strip() if text_col < len(row) else ""
        label = row[label_col].strip() if label_col < len(row) else ""
        if (text.lower(), label.lower()) == (header[text_col].lower(), header[label_col].lower()):
            found.header_rows += 1
        elif not text:
            found.empty_rows += 1
        elif not label:
            found.unlabelled_rows += 1
        else:
            groups.setdefault(_key(text), (text, []))[1].append(label)
    if not groups:
        raise Invalid("no examples")
    for key, (text, labels) in groups.items():
        found.texts.append(text)
        found.keys.append(key)
        found.labels.append(_majority(labels))
        found.duplicate_rows += len(labels) - 1
        found.conflicts += len(set(labels)) > 1
    return found


def canonical_integer(label: str) -> str | None:
    """``"+1"``, ``"1.0"``, ``"-0"``, ``"007"``, ``"٣"`` -> ``"1"``, ``"1"``, ``"0"``, ``"7"``, ``"3"``;
    None when the label is not an integer, or one of more digits than Python's int() reads (4300)."""
    body = label[1:] if label[:1] in ("+", "-") and label else label
    whole, _, fraction = body.partition(".")
    if not (whole.isdecimal() and not fraction.strip("0")) or len(whole) > sys.get_int_max_str_digits():
        return None
    digits = "".join(str(unicodedata.decimal(c)) for c in whole).lstrip("0") or "0"
    return "-" + digits if label.startswith("-") and digits != "0" else digits


def canonical_labels(*label_lists: list[str]) -> list[list[str]]:
    """Integer labels written alike, when every label of every list is an integer."""
    if all(canonical_integer(label) is not None for labels in label_lists for label in labels):
        return [[canonical_integer(label) for label in labels] for labels in label_lists]
    return [list(labels) for labels in label_lists]


def label_order(labels) -> tuple[str, ...]:
    """Sorted; numerically (then by spelling) when every label is an integer."""
    if all(canonical_integer(label) is not None for label in labels):
        return tuple(sorted(set(labels), key=lambda label: (int(canonical_integer(label)), label)))
    return tuple(sorted(set(labels)))


# --- checks -------------------------------------------------------------------------------------------


def one_line(err: JaxpruneError) -> str:
    """The error's message, checked: one line, what was wrong and after "; " what to do."""
    message = str(err)
    assert message and len(message.splitlines()) == 1 and "\n" not in message, repr(message[:500])
    assert "; " in message, f"no advice after '; ' in {message[:500]!r}"
    return message


def refused(call) -> str:
    """The one-line message of the JaxpruneError that ``call()`` must raise."""
    try:
        call()
    except JaxpruneError as err:
        return one_line(err)
    raise AssertionError("expected a JaxpruneError, the call succeeded")


def load_or_refuse(call):
    """``call()``'s result, or None after a one-line JaxpruneError; any other exception fails the test."""
    try:
        return call()
    except JaxpruneError as err:
        one_line(err)
        return None


def pairs(dataset) -> list[tuple[str, str]]:
    names = dataset.features["label"].names
    assert all(0 <= label < len(names) for label in dataset["label"])
    return [(text, names[label]) for text, label in zip(dataset["text"], dataset["label"])]


def written(folder: str, name: str, payload: bytes, kind: str) -> Path:
    path = Path(folder) / name
    path.write_bytes(payload)
    FILES[kind] += 1
    return path


# --- generated tables ---------------------------------------------------------------------------------

SPECIAL = ' ab,;"\'\t\r\n\x00\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2028\u2029\ufeff\u3000é€अ\\'
WHITESPACE = (" ", "  ", "\t", "\n", "\r\n", "\r", "\xa0", "\u3000", "\x0b", "\x1c", "\u2028")
WORD_LABELS = ("pos", "neg", "Neutral", "सकारात्मक", "a b", "LABEL", "café")
INTEGER_LABELS = ("0", "1", "-1", "+1", "1.0", "2", "-0", "007", "3.00", "1.", "٣",
                  "12345678901234567891", "12345678901234567892")  # the last two: one float, two integers
QUOTINGS = (csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC, csv.QUOTE_NONE)
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "utf-8", "utf-16")  # 2 in 7 not UTF

cells = st.one_of(st.text(max_size=30), st.text(alphabet=SPECIAL, max_size=12),
                  st.sampled_from(["", " ", "\t", " \r\n ", "\x00"]))  # fmt: skip


@dataclasses.dataclass
class Spec:
    """A table and how it is written: header, rows of cells, csv options, encoding, columns to ask for."""

    header: list[str]
    rows: list[list[str]]
    suffix: str = ".csv"
    quoting: int = csv.QUOTE_MINIMAL
    lineterminator: str = "\r\n"
    encoding: str = "utf-8"
    text_column: str | None = None
    label_column: str | None = None

    def __repr__(self) -> str:  # a 200k-character cell shown whole would bury the failure
        short = lambda row: [c if len(c) <= 300 else f"{c[:60]!r}... ({len(c)} chars)" for c in row]
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["header"], fields["rows"] = short(self.header), [short(row) for row in self.rows]
        return f"Spec({', '.join(f'{k}={v!r}' for k, v in fields.items())})"

    def payload(self) -> bytes:
        options = {"escapechar": "\\"} if self.quoting == csv.QUOTE_NONE else {}
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if self.suffix == ".tsv" else ",", quoting=self.quoting,
                            lineterminator=self.lineterminator, **options)
        for row in [self.header, *self.rows]:
            if self.quoting == csv.QUOTE_NONNUMERIC:  # numbers unquoted, the rest quoted
                row = [int(cell) if re.fullmatch(r"-?[0-9]{1,30}", cell) else cell for cell in row]
            writer.writerow([] if row == [""] and self.quoting == csv.QUOTE_NONE else row)  # else csv.Error
        return out.getvalue().encode(self.encoding, errors="replace")


def _recased(draw, name: str) -> str:
    upper = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    cased = "".join(c.upper() if up else c for c, up in zip(name, upper))
    return draw(st.sampled_from(["", " ", "\t"])) + cased + draw(st.sampled_from(["", " "]))


def _variant(draw, text: str) -> str:
    """The text with other whitespace around and between its words: the same text to the loader."""
    words = text.split()
    seps = draw(st.lists(st.sampled_from(WHITESPACE), min_size=len(words), max_size=len(words)))
    return draw(st.sampled_from(["", " ", "\t", "\n"])) + "".join(w + s for w, s in zip(words, seps))


@st.composite
def tables(draw, encodings=ENCODINGS) -> Spec:
    n_cols = draw(st.integers(2, 5)) if draw(st.sampled_from([True] * 7 + [False])) else 1
    header = draw(st.lists(st.one_of(st.sampled_from(["id", "Text", "LABEL", "notes", "", "Sentence", "class"]),
                                     st.text(max_size=8)), min_size=n_cols, max_size=n_cols))
    text_pos, label_pos = (draw(st.integers(0, n_cols - 1)) if draw(st.sampled_from([True] * 7 + [False])) else None
                           for _ in "tl")  # fmt: skip
    if text_pos is not None and text_pos == label_pos and draw(st.sampled_from([True] * 3 + [False])):
        label_pos = (text_pos + 1) % n_cols  # mostly two columns; with one the text column goes missing
    if text_pos is not None:
        header[text_pos] = _recased(draw, draw(st.sampled_from(TEXT_NAMES)))
    if label_pos is not None:
        header[label_pos] = _recased(draw, draw(st.sampled_from(LABEL_NAMES)))
    label_pool = draw(st.sampled_from([WORD_LABELS, INTEGER_LABELS, WORD_LABELS[:2] + INTEGER_LABELS[:4]]))
    labels = st.one_of(st.sampled_from(label_pool), st.sampled_from(["", " ", "\t"]), st.text(max_size=4))
    pool = draw(st.lists(st.one_of(cells, st.sampled_from(["good film", " bad  film ", "अ ब"])),
                         min_size=1, max_size=6))
    rows = []
    for _ in range(draw(st.integers(1, 25)) if draw(st.sampled_from([True] * 7 + [False])) else 0):
        row = draw(st.lists(cells, min_size=n_cols, max_size=n_cols))
        kind = draw(st.integers(0, 9))
        if text_pos is not None:
            row[text_pos] = (_variant(draw, draw(st.sampled_from(pool))) if kind < 6
                             else _recased(draw, header[text_pos].strip()) if kind == 9
                             else draw(cells))  # fmt: skip
        if label_pos is not None:
            row[label_pos] = (_recased(draw, header[label_pos].strip()) if kind == 9
                              else draw(st.sampled_from(label_pool)) if draw(st.integers(0, 3))
                              else draw(labels))  # fmt: skip
        if draw(st.integers(0, 9)) == 0:  # a ragged row
            row = row[: draw(st.integers(0, n_cols))]
        rows.append(row)
    if rows and draw(st.integers(0, 24)) == 0:  # a cell longer than the csv module's default limit
        piece = draw(st.text(min_size=1, max_size=5))
        size = draw(st.integers(DEFAULT_FIELD_LIMIT + 1, 200_000))
        row = draw(st.sampled_from(rows))
        if row:
            row[draw(st.integers(0, len(row) - 1))] = (piece * (size // len(piece) + 1))[:size]
    asked = [None, None]
    for i, (pos, names) in enumerate(((text_pos, TEXT_NAMES), (label_pos, LABEL_NAMES))):
        choice = draw(st.integers(0, 9))
        if choice == 8:
            asked[i] = _recased(draw, header[pos].strip() if pos is not None else draw(st.sampled_from(names)))
        elif choice == 9:
            asked[i] = draw(st.sampled_from([*header, "body", "", "text"]))
    return Spec(header, rows, draw(st.sampled_from([".csv", ".tsv"])), draw(st.sampled_from(QUOTINGS)),
                draw(st.sampled_from(["\n", "\r\n"])), draw(st.sampled_from(encodings)), *asked)


# --- 1. structured tables -----------------------------------------------------------------------------


@settings(max_examples=STRUCTURED_EXAMPLES, deadline=None, database=None)
@given(spec=tables())
# Regression: csv writes \x0b, \x1c-\x1e, \x85, \u2028/9 unquoted, and str.splitlines split rows at them.
@example(spec=Spec(["text", "label"], [["a\x0bb", "pos"], ["c\u2028d", "neg"], ["e\x1cf", "pos"], ["g\x85h", "neg"]],
                   quoting=csv.QUOTE_MINIMAL, lineterminator="\n", encoding="utf-8"))
# Regression: integer labels went through float(): 20 digits merged two labels, 400 digits overflowed.
@example(spec=Spec(["Review", "sentiment"], [["a", "12345678901234567891"], ["b", "12345678901234567892"],
                                             ["c", "9" * 400], ["d", "+1"], ["e", "1.0"]]))
# Regression: one of more digits than int() reads (4300) raised ValueError; it is a string label.
@example(spec=Spec(["text", "label"], [["a", "0" * 200_000], ["b", "+1"], ["c", "1"]]))
def _structured_property(spec: Spec) -> None:
    payload = spec.payload()
    if spec.quoting == csv.QUOTE_ALL and spec.encoding in ("utf-8-sig", "utf-16"):
        # Where csv round-trips every cell, the oracle reads back exactly the generated table.
        assert _csv_rows(_decoded(payload), "\t" if spec.suffix == ".tsv" else ",") == [spec.header, *spec.rows]
    try:
        expected, why = expected_table(payload, spec.suffix, spec.text_column, spec.label_column), None
    except Invalid as invalid:
        expected, why = None, invalid.args[0]
    if any(len(cell) > DEFAULT_FIELD_LIMIT for row in spec.rows for cell in row):
        OUTCOMES["structured", "with a cell over the csv field limit"] += 1
    old_limit = csv.field_size_limit(DEFAULT_FIELD_LIMIT)  # the loader must lift it itself
    try:
        _check_structured(spec, payload, expected, why)
    finally:
        csv.field_size_limit(old_limit)


def _check_structured(spec: Spec, payload: bytes, expected: Expected | None, why: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = written(folder, f"data{spec.suffix}", payload, "structured")
        read = lambda: data.read_table(path, spec.text_column, spec.label_column)
        load = lambda: data.load_csv(path, text_column=spec.text_column, label_column=spec.label_column)
        if expected is None:
            for call in (read, load):
                message = refused(call)
                assert why in message, (why, message[:500])
            OUTCOMES["structured", f"refused: {why}"] += 1
            return
        raw = read()
        assert (raw.texts, raw.labels, raw.keys) == (expected.texts, expected.labels, expected.keys)
        counts = (raw.header_rows, raw.empty_rows, raw.unlabelled_rows, raw.duplicate_rows, raw.conflicts)
        assert counts == (expected.header_rows, expected.empty_rows, expected.unlabelled_rows,
                          expected.duplicate_rows, expected.conflicts)  # fmt: skip
        dataset, info = load()
        (labels,) = canonical_labels(expected.labels)
        assert info.label_names == label_order(labels) == tuple(dataset.features["label"].names)
        assert pairs(dataset) == list(zip(expected.texts, labels))
        assert info.split_sizes == {"all": len(expected.texts)} and info.duplicate_rows == expected.duplicate_rows
        assert csv.field_size_limit() == DEFAULT_FIELD_LIMIT  # and put it back
        OUTCOMES["structured", "loaded"] += 1


def test_generated_tables_load_as_the_oracle_says_or_fail_in_one_line():
    before = FILES["structured"]
    _structured_property()
    outcomes = {what: n for (prop, what), n in OUTCOMES.items() if prop == "structured"}
    print(f"structured property: {FILES['structured'] - before} generated files, {outcomes}")
    assert FILES["structured"] - before >= STRUCTURED_EXAMPLES


# --- 2. raw bytes -------------------------------------------------------------------------------------

INSERTS = (b"\x00", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b'"', b'""', b"\r", b"\n", b",",
           b"\t", b"\xff", b"\xc3", b"\xe0\xa4", b"\x0b", "\u2028".encode())  # fmt: skip
mutations = st.tuples(st.sampled_from(["truncate", "flip", "insert", "delete"]), st.integers(0, 2**20),
                      st.sampled_from(INSERTS), st.integers(1, 255))  # fmt: skip


def mutated(payload: bytes, edits) -> bytes:
    for what, at, insert, xor in edits:
        at = at % (len(payload) + 1)
        if what == "truncate":
            payload = payload[:at]
        elif what == "insert":
            payload = payload[:at] + insert + payload[at:]
        elif payload and at < len(payload):
            payload = payload[:at] + (bytes([payload[at] ^ xor]) if what == "flip" else b"") + payload[at + 1:]
    return payload


raw_payloads = st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda bom, rest: bom + rest, st.sampled_from([codecs.BOM_UTF8, codecs.BOM_UTF16_LE,
                                                             codecs.BOM_UTF16_BE]), st.binary(max_size=2000)),
    st.builds(lambda spec, edits: mutated(spec.payload(), edits), tables(encodings=("utf-8", "utf-16")),
              st.lists(mutations, max_size=3)),
    st.builds(lambda rows, encoding, edits: mutated(Spec(["text", "label"], rows, encoding=encoding).payload(), edits),
              st.lists(st.lists(st.sampled_from(["a", "b b", 'c"', "d,e", "\r\nf", "pos", "neg", "1"]),
                                min_size=2, max_size=2), min_size=4, max_size=20),
              st.sampled_from(["utf-8", "utf-16"]), st.lists(mutations, min_size=1, max_size=2)),
)


@settings(max_examples=RAW_EXAMPLES, deadline=None, database=None)
@given(payload=raw_payloads, suffix=st.sampled_from([".csv", ".tsv", ".CSV"]),
       columns=st.sampled_from([(None, None), ("text", "label"), ("a", None), (None, "b")]))
def _raw_bytes_property(payload: bytes, suffix: str, columns) -> None:
    text_column, label_column = columns
    with tempfile.TemporaryDirectory() as folder:
        path = written(folder, f"train{suffix}", payload, "raw")
        raw = load_or_refuse(lambda: data.read_table(path, text_column, label_column))
        loaded = load_or_refuse(lambda: data.load_csv(path, text_column=text_column, label_column=label_column))
        assert (raw is None) == (loaded is None)  # only labels could still go wrong after reading, and don't
        if loaded is not None:
            dataset, info = loaded
            assert len(pairs(dataset)) == len(raw.texts) == info.split_sizes["all"]
        splits = load_or_refuse(lambda: data.load_files(path, text_column=text_column, label_column=label_column))
        OUTCOMES["raw", "refused" if loaded is None else "loaded"] += 1
        if splits is not None:
            train, evals = ({_key(text) for text, _ in pairs(splits[0][name])} for name in ("train", "eval"))
            assert not train & evals and len(train | evals) == len(raw.texts)


def test_arbitrary_and_mutated_bytes_load_or_fail_in_one_line():
    before = FILES["raw"]
    _raw_bytes_property()
    outcomes = {what: n for (prop, what), n in OUTCOMES.items() if prop == "raw"}
    print(f"raw-bytes property: {FILES['raw'] - before} generated files, {outcomes}")
    assert FILES["raw"] - before >= RAW_EXAMPLES


# --- 3. splits ----------------------------------------------------------------------------------------

SPLIT_LABELS = (("a", "b"), ("pos", "neg", "neutral"), ("0", "1", "2"), ("-1", "+1", "1.0", "0"), ("x",))


@dataclasses.dataclass
class SplitCase:
    train: list[tuple[str, str]]
    eval: list[tuple[str, str]] | None
    test: list[tuple[str, str]] | None
    keep_overlap: bool = False
    eval_fraction: float = 0.2
    seed: int = 0


def _csv_payload(rows) -> bytes:
    return Spec(["text", "label"], [list(row) for row in rows], quoting=csv.QUOTE_ALL).payload()


@st.composite
def split_cases(draw) -> SplitCase:
    texts = draw(st.lists(st.one_of(st.text(alphabet="abc दे\t", min_size=1, max_size=8), st.text(max_size=6)),
                          min_size=3, max_size=40, unique_by=_key))  # fmt: skip
    label_set = draw(st.sampled_from(SPLIT_LABELS))
    balanced = draw(st.sampled_from([True] * 3 + [False]))  # mostly every label on several texts
    train = [(_variant(draw, text) if i else text,
              label_set[n % len(label_set)] if balanced and i == 0 else draw(st.sampled_from(label_set)))
             for n, text in enumerate(texts) for i in range(draw(st.integers(1, 3)))]  # fmt: skip

    def held_out():
        if not draw(st.booleans()):
            return None
        shared = draw(st.lists(st.sampled_from(texts), max_size=8))
        fresh = draw(st.lists(st.text(alphabet="xyz ", min_size=1, max_size=6), min_size=1, max_size=5))
        labels = label_set + ("unseen",) * (not draw(st.sampled_from([True] * 7 + [False])))
        return [(_variant(draw, text), draw(st.sampled_from(labels))) for text in shared + fresh]

    return SplitCase(train, held_out(), held_out(), draw(st.booleans()), draw(st.sampled_from([0.2, 0.1, 0.5])),
                     draw(st.integers(0, 3)))


def expected_error_words(case: SplitCase, tables: dict[str, Expected]) -> list[str]:
    """Why the split must be refused (empty: it must succeed)."""
    train = tables["train"]
    all_labels = canonical_labels(*(t.labels for t in tables.values()))  # train first
    train_labels = all_labels[0]
    words = []
    counts = collections.Counter(train_labels)
    if "eval" not in tables:
        if min(counts.values()) < 2:
            words.append("fewer than 2 examples")
        elif not sum(min(round(n * case.eval_fraction), n - 1) for n in counts.values()):
            words.append("too few to split")
    for (role, table), labels in zip(tables.items(), all_labels):
        if role == "train":
            continue
        kept = [label for key, label in zip(table.keys, labels) if case.keep_overlap or key not in set(train.keys)]
        if not kept:
            words.append("every text")
        elif set(kept) - set(train_labels):
            words.append("outside the labels of the training data")
    return words


@settings(max_examples=SPLIT_EXAMPLES, deadline=None, database=None)
@given(case=split_cases())
# Regression: integer-looking training labels ("1.0") with a non-integer eval label: int("1.0") raised.
@example(case=SplitCase([("t0", "1.0"), ("t1", "0"), ("t2", "1.0")], [("t0", "x"), ("e", "0")], None))
# Regression: a test text in the eval part split off a lone training file stayed in test.
@example(case=SplitCase([(f"t{i}", "ab"[i % 2]) for i in range(10)], None,
                        [(f"t{i}", "ab"[i % 2]) for i in range(10)] + [("new", "a")]))
def _split_property(case: SplitCase) -> None:
    with tempfile.TemporaryDirectory() as folder:
        paths, tables, invalid = {}, {}, []
        for role in ("train", "eval", "test"):
            rows = getattr(case, role)
            if rows is None:
                continue
            payload = _csv_payload(rows)
            paths[role] = written(folder, f"{role}.csv", payload, "split")
            try:
                tables[role] = expected_table(payload, ".csv")
            except Invalid as why:
                invalid.append(why.args[0])
        call = lambda: data.load_files(paths["train"], paths.get("eval"), paths.get("test"),
                                       eval_fraction=case.eval_fraction, seed=case.seed,
                                       keep_overlap=case.keep_overlap)  # fmt: skip
        invalid = invalid or expected_error_words(case, tables)
        if invalid:
            message = refused(call)
            assert any(word in message for word in invalid), (invalid, message)
            OUTCOMES["split", f"refused: {'/'.join(sorted(set(invalid)))}"] += 1
            return
        splits, info = call()
    canonical = dict(zip(tables, canonical_labels(*(t.labels for t in tables.values()))))
    train = tables["train"]
    names = label_order(canonical["train"])
    assert info.label_names == names and all(tuple(s.features["label"].names) == names for s in splits.values())
    truth = {role: list(zip(tables[role].texts, canonical[role])) for role in tables}
    got = {role: pairs(split) for role, split in splits.items()}
    train_keys = {_key(text) for text, _ in got["train"]}
    if "eval" not in tables:  # a lone file: train and eval partition its distinct texts, per class as documented
        assert not train_keys & {_key(text) for text, _ in got["eval"]}
        assert sorted(got["train"] + got["eval"]) == sorted(truth["train"])
        per_class = collections.Counter(canonical["train"])
        assert collections.Counter(label for _, label in got["eval"]) == {
            label: min(round(n * case.eval_fraction), n - 1) for label, n in per_class.items()
            if min(round(n * case.eval_fraction), n - 1)}  # fmt: skip
        assert info.split_sizes["train"] + info.split_sizes["eval"] == len(train.texts)
        if "test" in got and not case.keep_overlap:
            assert not {_key(text) for text, _ in got["test"]} & {_key(text) for text, _ in got["eval"]}
    else:
        assert got["train"] == truth["train"]
    for role in ("eval", "test"):
        if role not in tables:
            continue
        shared = [key in set(train.keys) for key in tables[role].keys]
        assert info.overlap[role] == sum(shared)
        kept = [pair for pair, is_shared in zip(truth[role], shared) if case.keep_overlap or not is_shared]
        assert got[role] == kept
        assert info.overlap_removed[role] == (0 if case.keep_overlap else sum(shared))
        if not case.keep_overlap:
            assert not {_key(text) for text, _ in got[role]} & train_keys
    OUTCOMES["split", "loaded" if "eval" in tables else "loaded from a lone file"] += 1


def test_splits_share_no_text_partition_a_lone_file_or_fail_in_one_line():
    before = FILES["split"]
    _split_property()
    outcomes = {what: n for (prop, what), n in OUTCOMES.items() if prop == "split"}
    print(f"split property: {FILES['split'] - before} generated files, {outcomes}")
    assert FILES["split"] - before >= SPLIT_EXAMPLES

