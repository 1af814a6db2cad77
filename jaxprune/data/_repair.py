"""Repairing mojibake: UTF-8 text that was once decoded as CP866 and saved again.

Such a text shows Cyrillic and box-drawing look-alikes where its own script should be
(MahaNews SHC has 146 of them, 143 labelled Fashion: left alone, a model learns that
"Cyrillic means Fashion"). Encoding it back to CP866 gives the original UTF-8 bytes, so
``text.encode("cp866").decode("utf-8")`` is the repair, taken only when it succeeds and
turns a text of a foreign script into one of the data's dominant script: a real Russian
text in a Russian dataset is never touched.
"""

from __future__ import annotations

import collections
import unicodedata
from collections.abc import Sequence


def script_of(char: str) -> str | None:
    """The script of a letter, from its Unicode name (``"DEVANAGARI"``, ``"LATIN"``,
    ``"CYRILLIC"``...); box-drawing and block characters count as ``"BOX"`` (CP866 maps
    UTF-8 continuation bytes there); ``None`` for anything else."""
    name = unicodedata.name(char, "")
    if name.startswith(("BOX DRAWINGS", "LIGHT SHADE", "MEDIUM SHADE", "DARK SHADE", "FULL BLOCK",
                        "UPPER HALF BLOCK", "LOWER HALF BLOCK", "LEFT HALF BLOCK", "RIGHT HALF BLOCK")):
        return "BOX"
    if not (char.isalpha() or unicodedata.category(char) in ("Mn", "Mc")):
        return None
    return name.split(" ", 1)[0] if name else None


def main_script(text: str) -> str | None:
    """The most frequent script among the letters of ``text`` (None without letters)."""
    counts = collections.Counter(s for s in map(script_of, text) if s is not None)
    return counts.most_common(1)[0][0] if counts else None


def dominant_script(texts: Sequence[str]) -> str | None:
    """The most frequent script among the letters of all ``texts``."""
    counts = collections.Counter(s for text in texts for s in map(script_of, text) if s is not None)
    return counts.most_common(1)[0][0] if counts else None


def repair_cp866(text: str, script: str | None) -> str | None:
    """The repaired text when ``text`` is UTF-8 mis-decoded as CP866 and the repair reads in
    ``script``; ``None`` when it is not such a text.

    >>> broken = "महिला".encode("utf-8").decode("cp866")
    >>> repair_cp866(broken, "DEVANAGARI")
    'महिला'
    >>> repair_cp866("Привет", "CYRILLIC") is None
    True
    """
    if script is None or main_script(text) in (script, None):
        return None
    repaired = _decoded(text)
    return repaired if repaired != text and main_script(repaired) == script else None


def _decoded(text: str) -> str:
    """``text`` read back as the UTF-8 behind CP866, or as it is when there is none."""
    try:
        return text.encode("cp866").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def repair_texts(texts: Sequence[str]) -> tuple[list[str], int]:
    """``(texts, repaired)``: every CP866 mojibake among ``texts`` repaired into their
    dominant script, and how many were. The dominant script is counted with every repair
    that decodes applied, so a file mostly of mojibake still finds its own script.
    """
    script = dominant_script([_decoded(text) for text in texts])
    out, repaired = [], 0
    for text in texts:
        fixed = repair_cp866(text, script)
        if fixed is not None:
            out.append(fixed)
            repaired += 1
        else:
            out.append(text)
    return out, repaired
