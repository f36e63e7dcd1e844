"""Variety among the outputs asked for one intent: a penalty on repeating a sibling's token pairs.

Asked for n outputs of one intent, a small model sampled at a low temperature tends to write the same
phrases in each ("bright pink and white background", "A classic design for"). The sibling penalty lowers,
by CTRL's rule (:func:`udrl.student.decoding.penalized`), the logit of a token that would repeat a pair of
tokens (this token after the one before it) that another output of the same intent, or this output, has
already written. Tokens of the intent are exempt, so that every output may keep the subject, and so is the
end of the output. Rows drawn side by side do not see each other's draw of the same step, so a row that
draws the pair an earlier row of its group has just drawn draws once more under the penalty.

It is the idea of diverse beam search (Vijayakumar et al., 2016: a penalty on what other groups chose)
applied to sampled outputs and to pairs rather than single tokens, which leaves common words free. Written
by hand: transformers applies its diversity penalty to group beam search only.
"""

from __future__ import annotations

import torch

from udrl.student.decoding import penalized


class SiblingPairs:
    """The token pairs written so far by each group of ``group`` consecutive rows (one intent's outputs)."""

    def __init__(self, prompts: list[list[int]], group: int, penalty: float, eos_id: int):
        self.group, self.penalty = group, penalty
        self.exempt = [frozenset(p) | {eos_id} for p in prompts]
        self.followers: list[dict[int, set[int]]] = [{} for _ in range(-(-len(prompts) // group))]
        self.last: list[int | None] = [None] * len(prompts)  # each row's last output token

    def penalize(self, scores: torch.Tensor, rows: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
        """``scores`` [B, V] of live batch rows (``rows``: batch row -> prompt index) with the penalty on
        tokens that would repeat a pair of their group."""
        for b in alive.nonzero().squeeze(1).tolist():
            row = int(rows[b])
            followers = self.followers[row // self.group].get(self.last[row])
            tokens = sorted(followers - self.exempt[row]) if followers else []
            if tokens:
                scores[b, tokens] = penalized(scores[b, tokens], self.penalty)
        return scores

    def part(self, scores: torch.Tensor, token: torch.Tensor, rows: torch.Tensor, alive: torch.Tensor,
             draw) -> torch.Tensor:
        """``token`` [B] with a row's draw made again (once, under the penalty) when an earlier row of its
        group drew the same pair at this step: rows drawn side by side do not see each other's draws, and
        siblings that began alike would otherwise go on alike. ``draw(scores[b:b+1])`` draws one row."""
        drawn: set[tuple[int, int, int]] = set()
        for b in alive.nonzero().squeeze(1).tolist():
            row, t = int(rows[b]), int(token[b])
            if self.last[row] is None:  # an output's first token: no pair yet
                continue
            pair = (row // self.group, self.last[row], t)
            if pair in drawn and t not in self.exempt[row]:
                scores[b, t] = penalized(scores[b, t], self.penalty)
                t = int(draw(scores[b : b + 1])[0])
                token[b] = t
                pair = (row // self.group, self.last[row], t)
            drawn.add(pair)
        return token

    def add(self, token: torch.Tensor, rows: torch.Tensor, alive: torch.Tensor) -> None:
        """Record each live row's drawn ``token``."""
        for b in alive.nonzero().squeeze(1).tolist():
            row, t = int(rows[b]), int(token[b])
            if self.last[row] is not None:
                self.followers[row // self.group].setdefault(self.last[row], set()).add(t)
            self.last[row] = t
