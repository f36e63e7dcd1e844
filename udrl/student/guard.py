"""The word guard: an optional decoding constraint that keeps the student to real words.

A drawn token is kept only if every word it completes is a common English word
(:func:`udrl.lexicon.is_common`: a word-frequency floor, stricter than the word lists the non-word rate counts
with, which hold archaic words readers take for invented ones) or a word of the intent, and the word it leaves
open begins one of those; otherwise it is taken out of the row's distribution and the row draws again (at
most ``RETRIES`` times, then the likeliest allowed token is taken; the draw stands only if no token is
allowed). The end of an output must not cut a word short either, nor the token budget unless no token can
close the word (then the output ends on the beginning of a real word). The model's own non-word rate is what
``evaluate`` reports without ``--word-guard``.

The guard also carries the intent's subject words through: once a row has begun a word with the first
letters of a subject word it has not written yet, the tokens that go on spelling that word gain
``CARRY_BIAS`` logits. A rare subject falls into pieces (" l" "lam" "a", " New" "ark"), and after the first
piece the small model tends to finish a commoner word ("lava", "New city"); with the bias it mostly
finishes the one the intent names, and is still free to write another word.

Nor may a row write a word twice in a row ("tour tour", "Bend Bend Bend"): a token after which the word
being written spells the word before it, with only a space between, is drawn again like a non-word. The
carry and the penalties exempt the intent's words, which a small model then tends to repeat.

Nor may a row end on a word that leaves its phrase waiting (:func:`udrl.lexicon.ends_phrase`: "for an",
"its own unique", "A Perfect Place for a B"): there the end token is drawn again, and the row goes on to
finish the phrase. Words of the intent and a sentence's final stop may end an output.

Written here rather than as a transformers ``LogitsProcessor``: checking all 4,096 tokens of every row at
every step would cost more than the model's forward pass, while a check of the drawn token alone is a few
string operations, and the student's decoders draw before they could filter.
"""

from __future__ import annotations

import bisect
import copy
import re
from functools import lru_cache
from typing import TYPE_CHECKING

import torch

from udrl.lexicon import common_words, ends_phrase, is_common

if TYPE_CHECKING:
    from udrl.student.slots import Slots

RETRIES = 8
CARRY_BIAS = 3.0  # logits: about a 20-fold odds boost at temperature 1, more at the tuned temperatures
_BREAK = re.compile(r"[^a-z]+")
_REPEAT = re.compile(r"(?<![a-z])([a-z]+)\s+\1$")  # a word, a space, and the same word so far
_LAST_WORD = re.compile(r"([a-z]+(?:'[a-z]+)?)([^a-z]*)$")  # the last word of a tail and what follows it
_TAIL = 64  # characters of each row's output kept for the repeat check (longer than any two words)


def starts_word(prefix: str, own: frozenset[str] = frozenset()) -> bool:
    """Whether some common English word, or a word of ``own``, begins with ``prefix``."""
    if any(w.startswith(prefix) for w in own):
        return True
    words = common_words()
    i = bisect.bisect_left(words, prefix)
    return i < len(words) and words[i].startswith(prefix)


def own_words(intent: str) -> frozenset[str]:
    """The words of an intent, which the guard takes as real however rare."""
    return frozenset(_BREAK.split(intent.lower())) - {""}


@lru_cache(maxsize=65536)
def _whole(word: str) -> bool:
    return is_common(word)


class WordGuard:
    """Per-row word state for one decoding call: ``pieces[t]`` is the text token ``t`` adds (None: never
    allowed)."""

    def __init__(self, pieces: list[str], eos_id: int, intents: list[str],
                 spellings: dict[str, list[int]] | None = None, slots: Slots | None = None):
        self.pieces, self.eos_id = pieces, eos_id
        # the text of each slot token (:mod:`udrl.student.slots`) in each row: the row's intent word
        by_intent = {intent: slots.pieces(intent) if slots is not None else {} for intent in set(intents)}
        self.slot_pieces = [by_intent[intent] for intent in intents]
        self.own = [own_words(intent) for intent in intents]
        self.open = [""] * len(intents)  # the letters of the word each row has begun and not ended
        spellings = _spellings(pieces) if spellings is None else spellings
        carries = {intent: _carries(intent, spellings) for intent in set(intents)}
        self.carry = [carries[intent] for intent in intents]  # begun word -> [(subject word, its next tokens)]
        self.written = [set() for _ in intents]  # the words each row has closed
        self.tail = [""] * len(intents)  # the end of each row's output, lower-cased

    @classmethod
    def for_rows(cls, tokenizer, eos_id: int, intents: list[str], slots: Slots | None = None) -> WordGuard:
        return cls(_pieces(tokenizer), eos_id, intents, _tokenizer_spellings(tokenizer), slots)

    def slice(self, start: int, stop: int) -> WordGuard:
        """The guard of rows ``start:stop`` (a decoding shard)."""
        part = copy.copy(self)
        part.own, part.open = self.own[start:stop], self.open[start:stop]
        part.carry, part.written = self.carry[start:stop], self.written[start:stop]
        part.tail, part.slot_pieces = self.tail[start:stop], self.slot_pieces[start:stop]
        return part

    def _piece(self, row: int, token: int) -> str | None:
        """The text ``token`` adds to row ``row``'s output (None: a token never part of an output)."""
        return self.slot_pieces[row].get(token, self.pieces[token])

    def _real(self, row: int, word: str) -> bool:
        return word in self.own[row] or _whole(word)

    def allows(self, row: int, token: int, last: bool = False) -> bool:
        """Whether ``token`` keeps row ``row`` to real words (the end token, or any ``last`` token of the
        budget: its last word is whole)."""
        if token == self.eos_id:
            return not self.open[row] or self._real(row, self.open[row])
        piece = self._piece(row, token)
        if piece is None:  # a command or padding token, or a slot with no word: never part of an output
            return False
        *done, left = _BREAK.split(self.open[row] + piece.lower())
        if not all(not w or self._real(row, w) for w in done):
            return False
        return not left or (self._real(row, left) if last else starts_word(left, self.own[row]))

    def repeats(self, row: int, token: int) -> bool:
        """Whether ``token`` makes the word row ``row`` is writing spell the word just before it."""
        piece = None if token == self.eos_id else self._piece(row, token)
        return piece is not None and _REPEAT.search(self.tail[row] + piece.lower()) is not None

    def dangles(self, row: int, token: int) -> bool:
        """Whether ``token`` ends row ``row`` on a word its phrase cannot end on."""
        if token != self.eos_id:
            return False
        found = _LAST_WORD.search(self.tail[row])
        return bool(found and not any(stop in found.group(2) for stop in ".!?")
                    and found.group(1) not in self.own[row] and not ends_phrase(found.group(1)))

    def _fits(self, row: int, token: int, last: bool = False) -> bool:
        return self.allows(row, token, last) and not self.repeats(row, token) and not self.dangles(row, token)

    def advance(self, row: int, token: int) -> None:
        if token != self.eos_id:
            piece = (self._piece(row, token) or "").lower()
            *done, self.open[row] = _BREAK.split(self.open[row] + piece)
            self.written[row].update(done)
            self.tail[row] = (self.tail[row] + piece)[-_TAIL:]

    def steer(self, scores: torch.Tensor, rows: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """``scores`` with ``CARRY_BIAS`` added, in each live row that has begun a subject word it has not
        written yet, to the tokens that go on spelling it; ``rows`` as in :meth:`enforce`."""
        for b in alive.nonzero().squeeze(1).tolist():
            row = int(rows[b])
            for word, tokens in self.carry[row].get(self.open[row], ()):
                if word not in self.written[row]:
                    scores[b, tokens] += CARRY_BIAS
        return scores

    def enforce(self, scores: torch.Tensor, token: torch.Tensor, rows: torch.Tensor, alive: torch.Tensor,
                draw, last: bool = False) -> torch.Tensor:
        """``token`` [B] with each live row's draw replaced until the guard allows it; ``rows`` maps batch
        rows to this guard's rows, ``draw(scores[b:b+1])`` draws one row again, ``last``: the budget's last
        token. Advances every live row."""
        for b in alive.nonzero().squeeze(1).tolist():
            row, t = int(rows[b]), int(token[b])
            tries = 0
            while not self._fits(row, t, last) and tries < RETRIES:
                scores[b, t] = float("-inf")
                t = int(draw(scores[b : b + 1])[0])
                tries += 1
            if tries == RETRIES and not self._fits(row, t, last):  # the likeliest token allowed, if any
                ranked = scores[b].argsort(descending=True).tolist()
                # else one that repeats the word before or leaves the phrase open; with no whole word within
                # the budget, at least end on the beginning of one
                rules = (lambda c: self._fits(row, c, last), lambda c: self.allows(row, c, last))
                if last:  # without the budget's end the last rule is the one before: tried only at the end
                    rules += (lambda c: self.allows(row, c),)
                t = next((c for rule in rules for c in ranked if rule(c)), t)
            token[b] = t
            self.advance(row, t)
        return token


class WordRule:
    """The guard's rule for every token at once: the tokens a row may draw after it has begun the word
    ``state`` (for the word loss in training, which teaches the model what the guard enforces).

    Equal to :meth:`WordGuard.allows` token by token. Built from the word list rather than by testing each
    of the vocabulary's tokens, which per begun word would cost thousands of string tests: a token that
    starts with a break closes the begun word (allowed when that word is real and the rest of the token is
    fine on its own); a token of letters goes on with it (allowed when some word begins with the two).
    """

    def __init__(self, pieces: list[str | None], eos_id: int, spellings: dict[str, list[int]] | None = None):
        self.pieces = pieces
        self.spellings = _spellings(pieces) if spellings is None else spellings
        closing, self.beginnings, self.mixed = [eos_id], {}, []
        for token, piece in enumerate(self.pieces):
            if piece is None:
                continue
            *done, left = _BREAK.split(piece.lower())
            if _BREAK.match(piece.lower()):  # starts with a break: closes the begun word
                if _keeps_to_words(done, left):
                    closing.append(token)
                if len(done) == 1 and left:  # a break, then letters: may begin a word of the intent
                    self.beginnings.setdefault(left, []).append(token)
            elif done:  # letters, then a break: none in a byte-level BPE, whose pre-tokenizer parts them
                self.mixed.append(token)
        self.closing = torch.tensor(closing, dtype=torch.long)

    @classmethod
    def for_tokenizer(cls, tokenizer, eos_id: int) -> WordRule:
        return cls(_pieces(tokenizer), eos_id, _tokenizer_spellings(tokenizer))

    def allowed(self, states: list[str], own: frozenset[str] = frozenset()) -> torch.Tensor:
        """[len(states), V] True for the tokens the guard allows after each begun word of ``states`` ('' between
        words), the words of ``own`` (the intent's) real too."""
        if not states:
            return torch.zeros(0, len(self.pieces), dtype=torch.bool)
        mask = torch.stack([self._common(state) for state in states])  # a copy: the cached rows stay as they are
        beginnings = [t for word in own for t in _spelling(word, self.beginnings)]
        for i, state in enumerate(states):
            closes = not state or _whole(state)
            if state in own and not closes:
                mask[i, self.closing] = True
            if closes or state in own:
                mask[i, beginnings] = True
            for word in own:
                if word.startswith(state) and word != state:
                    mask[i, _spelling(word[len(state):], self.spellings)] = True
        return mask

    @lru_cache(maxsize=None)
    def _common(self, state: str) -> torch.Tensor:
        """The mask after ``state`` with common words only."""
        mask = torch.zeros(len(self.pieces), dtype=torch.bool)
        mask[self._going_on(state)] = True
        if not state or _whole(state):
            mask[self.closing] = True
        return mask

    def _going_on(self, state: str) -> torch.Tensor:
        words = common_words()
        found = set()
        for word in words[bisect.bisect_left(words, state):bisect.bisect_left(words, state + "{")]:  # "{" > "z"
            found.update(_spelling(word[len(state):], self.spellings))
        for token in self.mixed:
            *done, left = _BREAK.split(state + self.pieces[token].lower())
            if _keeps_to_words(done, left):
                found.add(token)
        return torch.tensor(sorted(found), dtype=torch.long)

    def states(self, ids: list[int]) -> list[str]:
        """The begun word before each token of an output's ``ids``."""
        state, out = "", []
        for token in ids:
            out.append(state)
            if self.pieces[token] is not None:
                state = _BREAK.split(state + self.pieces[token].lower())[-1]
        return out


def _keeps_to_words(done: list[str], left: str) -> bool:
    """Whether the words a token closes are common and the one it leaves open begins one (no intent words)."""
    return all(not w or _whole(w) for w in done) and (not left or starts_word(left))


def _spelling(rest: str, by_letters: dict[str, list[int]]) -> list[int]:
    """The tokens that spell one or more of the first letters of ``rest`` (``by_letters``: letters -> ids)."""
    return [t for end in range(1, len(rest) + 1) for t in by_letters.get(rest[:end], ())]


def _spellings(pieces: list[str | None]) -> dict[str, list[int]]:
    """Token ids by the lower-cased letters they add inside a word (pieces of letters only, no space)."""
    spellings: dict[str, list[int]] = {}
    for token, piece in enumerate(pieces):
        if piece and piece.isalpha() and piece.isascii():
            spellings.setdefault(piece.lower(), []).append(token)
    return spellings


def _carries(intent: str, spellings: dict[str, list[int]]) -> dict[str, list[tuple[str, torch.Tensor]]]:
    """For each beginning of a subject word of ``intent`` (:func:`udrl.intents.subject_words`): the word
    and the tokens that add one or more of its next letters."""
    from udrl.intents import subject_words

    carries: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for word in subject_words(intent):
        if not word.isalpha():
            continue
        for cut in range(1, len(word)):
            rest = word[cut:]
            tokens = _spelling(rest, spellings)
            if tokens:
                carries.setdefault(word[:cut], []).append((word, torch.tensor(tokens)))
    return carries


@lru_cache(maxsize=4)
def _tokenizer_spellings(tokenizer) -> dict[str, list[int]]:
    return _spellings(_pieces(tokenizer))


@lru_cache(maxsize=4)
def _pieces(tokenizer) -> list[str | None]:
    """The text each token id adds (a byte-level piece that is not a whole character reads as a break);
    None for special tokens, which decoding leaves out of the text."""
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return [None if i in special else tokenizer.decode([i]) for i in range(len(tokenizer))]
