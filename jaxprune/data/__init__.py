"""Loading labelled text-classification CSVs into ``datasets`` splits, without leakage.

Any CSV (or TSV) with a text column and a label column works: MahaNews's
``{variant}_{Train,Valid,Test}.csv``, the project's offline corpus, or a
user's own files with other column names and string or integer labels. The
loader cleans each file (drops stray copies of the header line, empty texts
and rows without a label, and counts them), collapses exact duplicate texts
(after whitespace normalisation; a text given several labels keeps the most
frequent one and is reported), maps labels to ids, and returns a
:class:`datasets.DatasetDict` with ``train``, ``eval`` and (with a test file)
``test`` splits, each with columns ``text`` (string) and ``label``
(:class:`datasets.ClassLabel`).

Splits never share a text: a lone file is split over its distinct texts
(stratified, seeded), and eval or test texts that also occur in the training
file are reported and, unless ``keep_overlap``, left out of that split.

The files are read with :mod:`csv` rather than ``datasets.load_dataset("csv")``
because a bad file must end in one line saying what is wrong with it (pandas
raises tracebacks about tokenizing and dtypes); ``datasets`` holds the result.
Nothing here prints: what was dropped or split is returned in :class:`DataInfo`
(and logged), and the caller decides what to show.

The pieces: :mod:`._read` (one file: decoding, columns, cleaning, duplicates), :mod:`._splits`
(leak-free splits, :class:`DataInfo`) and :mod:`._sources` (files, folders, MahaNews, the corpus).
"""

from jaxprune._extras import require

require(__name__, "train", "datasets")

from jaxprune.data._read import LABEL_COLUMNS, TEXT_COLUMNS, normalise_text, read_table
from jaxprune.data._sources import (
    MAHANEWS_URL,
    OFFLINE_CORPUS,
    VARIANTS,
    download_mahanews,
    find_split_files,
    load_csv,
    load_files,
    load_folder,
    load_mahanews,
    load_offline_corpus,
)
from jaxprune.data._splits import DataInfo, build_splits, stratified_split

__all__ = [
    "LABEL_COLUMNS", "MAHANEWS_URL", "OFFLINE_CORPUS", "TEXT_COLUMNS", "VARIANTS", "DataInfo", "build_splits",
    "download_mahanews", "find_split_files", "load_csv", "load_files", "load_folder", "load_mahanews",
    "load_offline_corpus", "normalise_text", "read_table", "stratified_split",
]
