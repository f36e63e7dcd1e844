"""Intent-word slots: the student writes a subject word of its intent as one token that stands for it.

The 4,096-token BPE spells a rare subject in one- to three-letter pieces (" C" "ab" "ot"), and a 2.6M model
copies such pieces out of order ("Cabotabot", "Holmesmes"). With slots, the k-th subject word of the intent
(:func:`udrl.intents.subject_words`, at most ``CommandEncoding.slots`` of them) is marked in the prompt by a
token ``<|w:k|>`` written right after the word, so that the token's state has read the word; the output
writes the word as that token (``<|W:k|>``: with a capital first letter, for title case; ``<|l:k|>``: in
lower case), and decoding puts back the word as the intent spells it (or in that form). This is
delexicalisation, as in task-oriented language generation (Wen et al., 2015), with slots numbered by their
place in the intent instead of typed. An inflection the word takes in the output ("llamas") follows its slot
as ordinary tokens.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from udrl.intents import subject_words

_LETTER = r"[^\W\d_]"
_SLOT = re.compile(r"<\|([wWl]):(\d+)\|>")
# how a slot token writes its word: as the intent spells it, with a capital first letter (title case), or in
# lower case (search queries); a form that equals the one before it is never written
FORMS = {"w": lambda word: word, "W": lambda word: word[:1].upper() + word[1:], "l": str.lower}


def slot_token(k: int, form: str = "w") -> str:
    """The token of the intent's ``k``-th slot word (from 1) in one of ``FORMS``."""
    return f"<|{form}:{k}|>"


def slot_tokens(slots: int) -> list[str]:
    """Every slot token of an encoding with ``slots`` slots, in a fixed order (the lower-case forms last:
    they came later, and a continued student keeps its token ids)."""
    return ([slot_token(k, form) for k in range(1, slots + 1) for form in ("w", "W")]
            + [slot_token(k, "l") for k in range(1, slots + 1)])


def _first(word: str, text: str, flags: int = 0) -> re.Match | None:
    """The first occurrence of ``word`` in ``text`` as a whole word."""
    return re.search(rf"(?<!{_LETTER}){re.escape(word)}(?!{_LETTER})", text, flags)


def _slot_matches(intent: str, slots: int) -> list[re.Match]:
    """Where the intent's first ``slots`` subject words first stand in it as whole words; a piece of a word
    with other letters ("sum" of "résumé") is none."""
    found = (_first(word, intent, re.IGNORECASE) for word in subject_words(intent))
    return [match for match in found if match][:slots]


def slot_words(intent: str, slots: int) -> list[str]:
    """The intent's first ``slots`` subject words, spelt as the intent spells them."""
    return [match.group(0) for match in _slot_matches(intent, slots)]


def marked_intent(intent: str, slots: int) -> str:
    """The intent with each slot word's first occurrence followed by its slot token."""
    ends = sorted(((m.end(), k) for k, m in enumerate(_slot_matches(intent, slots), start=1)), reverse=True)
    for end, k in ends:  # from the back, so that an insertion moves no place still to come
        intent = intent[:end] + slot_token(k) + intent[end:]
    return intent


def delexicalised(text: str, words: Sequence[str]) -> str:
    """``text`` with each slot word that follows a space (plain, plural or possessive) in one of ``FORMS``
    written as its slot token, which stands for the space and the word; other spellings stay as they are."""
    for k, word in enumerate(words, start=1):
        def slot(found: re.Match, k: int = k, word: str = word) -> str:
            form = next((f for f, spell in FORMS.items() if found.group(1) == spell(word)), None)
            return found.group(0) if form is None else slot_token(k, form) + found.group(2)

        pattern = rf" ({re.escape(word)})((?:e?s|'s)?)(?!{_LETTER})"
        text = re.sub(pattern, slot, text, flags=re.IGNORECASE)
    return text


class Slots:
    """A tokenizer's slot tokens: which id stands for which slot, and how an output's ids read as text."""

    def __init__(self, tokenizer, slots: int):
        vocab = tokenizer.get_vocab()
        self.tokenizer, self.count = tokenizer, slots
        self.by_id = {vocab[t]: (int(m.group(2)), m.group(1))
                      for t in slot_tokens(slots) if t in vocab for m in [_SLOT.fullmatch(t)]}

    def pieces(self, intent: str) -> dict[int, str]:
        """The text each slot token adds to an output for ``intent`` (slots beyond its words: none)."""
        words = slot_words(intent, self.count)
        return {t: " " + FORMS[form](words[k - 1]) for t, (k, form) in self.by_id.items() if k <= len(words)}

    def decode(self, ids: Sequence[int], intent: str) -> str:
        """The output's text, each slot token read as its word of ``intent`` (a slot the intent has no
        word for reads as nothing); other special tokens are left out, as ``decode`` does."""
        if not self.by_id:
            return self.tokenizer.decode(ids, skip_special_tokens=True)
        pieces, parts, run = self.pieces(intent), [], []
        for token in ids:
            if token in self.by_id:
                parts += [self.tokenizer.decode(run, skip_special_tokens=True), pieces.get(token, "")]
                run = []
            else:
                run.append(token)
        parts.append(self.tokenizer.decode(run, skip_special_tokens=True))
        return "".join(parts)
