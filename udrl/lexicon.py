"""English vocabulary from offline sources: WordNet nouns and adjectives by kind, and an English word test.

WordNet comes from Debian's ``wordnet-base`` (``/usr/share/wordnet``, or ``UDRL_WORDNET``); word frequencies
and the word list come from the PyPI packages ``wordfreq`` and ``english-words``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

WORDNET_DIR = "/usr/share/wordnet"
# WordNet's lexicographer files (``lexnames``): the number in each synset line names the kind of noun.
NOUN_KINDS = {5: "animal", 6: "object", 13: "food", 15: "place", 17: "nature", 18: "person", 20: "plant"}
# Not subjects for a design brief. A short list by hand: no lexical source marks offence or gore.
UNSUITABLE = frozenset(
    "rape murder corpse turd shit fuck cunt whore slut nigger faggot nazi suicide torture genocide porn "
    "penis vagina anus feces urine vomit semen sex sexual massacre slave slavery bastard bitch dick prick "
    "fucking fucker cock pussy ass arse fag dyke kill killing execution lynching molestation abortion".split())
# Taxonomy and other reference terms, not things ("genus Rhea", "capital of Maine")
_TAXONOMY = frozenset("genus family order class phylum capital unit subfamily suborder division".split())
ADJECTIVE_FILES = {0}  # adj.all: descriptive adjectives (adj.pert holds "relational" ones like "atomic")
ENGLISH_ZIPF = 2.0  # a word seen at least once per 10 million words of running text counts as English
# The word guard's floor: about once in 30 million words ("llama" 2.95, "dachshund" 2.64). The word lists
# also hold archaic and obscure words ("pulchritudinous" 1.27, "zumbooruk" 0) that readers take for invented.
COMMON_ZIPF = 2.5
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


# Words a phrase cannot end on: articles, possessives, prepositions, conjunctions ("a bright illustration for
# an", "made from"). Not those that end idioms ("like never before", "all about", "here it is"). Listed by hand:
# WordNet holds only nouns, verbs, adjectives and adverbs, and no installed library tags parts of speech.
CLOSED_CLASS = frozenset("""a an the my your his her its our their whose of for with to in on at by from into onto
under between as like than through across without among toward towards upon and or but nor because while if
that which whether own very such every""".split())


@dataclass(frozen=True)
class Lemma:
    """One WordNet lemma: its text (spaces, original case), kind and word frequency (Zipf scale)."""

    text: str
    kind: str
    zipf: float

    @property
    def proper(self) -> bool:
        return self.text[:1].isupper()


def wordnet_dir() -> Path:
    path = Path(os.environ.get("UDRL_WORDNET", WORDNET_DIR))
    if not (path / "data.noun").is_file():
        raise FileNotFoundError(f"WordNet not found at {path}: apt-get install wordnet-base "
                                "(or set UDRL_WORDNET to a folder with data.noun and data.adj)")
    return path


def read_wordnet(path: str | Path, kinds: dict[int, str]) -> dict[str, str]:
    """``lemma -> kind`` for every lemma of a WordNet ``data.*`` file whose lexicographer file is in ``kinds``.

    Parsed by hand: the WordNet readers on PyPI (nltk, wn) download their own data at run time, while the
    database format is one synset a line: ``offset lex_filenum ss_type w_cnt (word lex_id)+ ...``.
    """
    found: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(" "):  # the licence header
                continue
            fields = line.split(" ")
            kind = kinds.get(int(fields[1]))
            if kind is None:
                continue
            for i in range(int(fields[3], 16)):
                word = re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ")
                found.setdefault(word, kind)
    return found


def tagged_uses(index_path: str | Path) -> dict[str, int]:
    """``lemma -> tagsense_cnt`` of a WordNet ``index.*`` file: how often the lemma was seen in that part of
    speech in WordNet's tagged corpus (the field before the synset offsets)."""
    uses = {}
    with open(index_path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(" "):
                continue
            fields = line.split()
            pointers = int(fields[3])
            uses[fields[0]] = int(fields[5 + pointers])
    return uses


def english_text() -> list[str]:
    """Broad English from WordNet: every lemma and every gloss with its examples (about 200,000 lines), for
    fitting a tokenizer whose pieces cover the words people type."""
    lines = []
    for part in ("noun", "verb", "adj", "adv"):
        with open(wordnet_dir() / f"data.{part}", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(" ") or "|" not in line:
                    continue
                fields = line.split(" ")
                lemmas = [fields[4 + 2 * i].replace("_", " ") for i in range(int(fields[3], 16))]
                lines.append(", ".join(re.sub(r"\(.*\)$", "", w) for w in lemmas))
                lines.append(line.split("|", 1)[1].strip())
    return lines


def zipf(text: str) -> float:
    """Word frequency of a word or phrase on the Zipf scale (3 = once per million words)."""
    from wordfreq import zipf_frequency

    return zipf_frequency(text, "en")


@lru_cache(maxsize=4)
def nouns(min_zipf: float = 3.0) -> tuple[Lemma, ...]:
    """Nouns people know, by kind, sorted: common nouns and names (landmarks, people) from WordNet."""
    found = read_wordnet(wordnet_dir() / "data.noun", NOUN_KINDS)
    kept = []
    for text, kind in found.items():
        parts = text.lower().split()
        if (not re.fullmatch(r"[A-Za-z][A-Za-z -]*[a-z]", text) or len(text) < 3 or len(parts) > 3
                or min(len(p) for p in re.split(r"[ -]", text)) < 2
                or (UNSUITABLE | _TAXONOMY) & set(re.split(r"[ -]", text.lower())) or " of " in text):
            continue
        score = zipf(text)
        # a phrase is rarer than its words: a known two-word noun ("snow globe") sits near 2.5
        floor = min_zipf - (0.4 if len(parts) > 1 else 0.0)
        if score >= floor:
            kept.append(Lemma(text, kind, score))
    return tuple(sorted(kept, key=lambda lemma: lemma.text))


@lru_cache(maxsize=4)
def adjectives(min_zipf: float = 3.8) -> tuple[str, ...]:
    """Common, short, descriptive single-word adjectives from WordNet ("cozy", "giant", "golden").

    Participles and the suffixes of relational or abstract adjectives ("closing", "empirical", "indirect")
    are left out: they describe ideas more often than things one can draw.
    """
    found = read_wordnet(wordnet_dir() / "data.adj", {f: "adjective" for f in ADJECTIVE_FILES})
    as_adjective = tagged_uses(wordnet_dir() / "index.adj")
    as_other = tagged_uses(wordnet_dir() / "index.noun") | tagged_uses(wordnet_dir() / "index.verb")
    found = {w for w in found if as_adjective.get(w, 0) > as_other.get(w, 0)}  # mostly used as an adjective
    return tuple(sorted(w for w in found if w.isalpha() and w.islower() and 3 <= len(w) <= 8
                        and w not in UNSUITABLE and not w.startswith(("in", "un", "non"))
                        and not w.endswith(("ing", "ed", "th", "al", "ive", "ic", "ous", "ent", "ant", "ary", "ible",
                                            "able", "ist", "ate", "ior"))
                        and min_zipf <= zipf(w) <= 5.3))


@lru_cache(maxsize=1)
def _word_list() -> frozenset[str]:
    from english_words import get_english_words_set

    return frozenset(get_english_words_set(["web2", "gcide"], lower=True, alpha=True))


@lru_cache(maxsize=2)
def common_words(min_zipf: float = COMMON_ZIPF) -> tuple[str, ...]:
    """Alphabetic English words at least ``min_zipf`` frequent in running text (wordfreq's list), sorted; the
    parts of common contractions count as words ("shouldn" and "t" of "shouldn't")."""
    from wordfreq import iter_wordlist

    found = set()
    for word in iter_wordlist("en", wordlist="large"):  # most frequent first
        if zipf(word) < min_zipf:
            break
        found.update(part for part in word.split("'") if part.isalpha() and part.isascii())
    return tuple(sorted(found))


@lru_cache(maxsize=2)
def _common_set(min_zipf: float) -> frozenset[str]:
    return frozenset(common_words(min_zipf))


def is_common(word: str, min_zipf: float = COMMON_ZIPF) -> bool:
    """True for a word frequent enough in running text that a reader knows it (the word guard's test)."""
    word = word.lower()
    return word in _common_set(min_zipf) or zipf(word) >= min_zipf


def words(text: str) -> list[str]:
    """Lower-case alphabetic words (with inner apostrophes) of ``text``."""
    return _WORD.findall(text.lower())


def is_english(word: str) -> bool:
    """True for a word in an English word list or frequent enough in running text (inflections, new words)."""
    word = word.lower()
    base = word.split("'")[0]
    return base in _word_list() or zipf(word) >= ENGLISH_ZIPF


@lru_cache(maxsize=1)
def _adjectives_only() -> frozenset[str]:
    """WordNet lemmas that are adjectives and nothing else ("unique", "old-fashioned", "various")."""
    others = set()
    for part in ("noun", "verb", "adv"):
        others.update(tagged_uses(wordnet_dir() / f"index.{part}"))
    return frozenset(set(tagged_uses(wordnet_dir() / "index.adj")) - others)


def ends_phrase(word: str) -> bool:
    """Whether a text may end on ``word``: not a closed-class word, a letter other than "I", or an adjective
    that WordNet knows only as one, each of which leaves the phrase waiting for what follows."""
    word = word.lower()
    return not (word.split("'")[0] in CLOSED_CLASS or (len(word) == 1 and word != "i") or word in _adjectives_only())
