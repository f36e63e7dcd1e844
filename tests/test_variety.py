"""The sibling penalty: outputs of one intent avoid each other's token pairs; the intent's tokens stay free."""

import torch

from test_student import _random_gpt2
from udrl.student.decoding import penalized
from udrl.student.variety import SiblingPairs


def test_a_pair_written_by_a_sibling_is_penalized_except_for_the_intents_tokens():
    # rows 0 and 1 are one intent's outputs (prompt tokens 7, 8), row 2 another intent's
    pairs = SiblingPairs([[7, 8], [7, 8], [9]], group=2, penalty=2.0, eos_id=0)
    rows, alive = torch.arange(3), torch.ones(3, dtype=torch.bool)
    for token in ([5, 5, 5], [6, 6, 6]):
        pairs.add(torch.tensor(token), rows, alive)
    pairs.add(torch.tensor([5, 3, 3]), rows, alive)  # row 0 now ends on 5 again; rows 1 and 2 on 3
    pairs.add(torch.tensor([8, 5, 5]), rows, alive)  # (5, 8): 8 is the intent's
    scores = torch.full((3, 10), 4.0)
    out = pairs.penalize(scores.clone(), rows, alive)
    # row 1 ends on 5: its group wrote 5 -> 6 and 5 -> 8; 6 is penalized, 8 is the intent's and stays free
    assert out[1, 6] == penalized(torch.tensor(4.0), 2.0) and out[1, 8] == 4.0
    assert out[1].ne(4.0).sum() == 1
    # row 2 ends on 5 too, but its own group wrote only 5 -> 6 -> 3 -> 5: 6 is its own pair, penalized as well
    assert out[2, 6] == 2.0 and out[2].ne(4.0).sum() == 1
    assert out[0].eq(4.0).all()  # row 0 ends on 8, which its group never went on from


def test_the_penalty_changes_greedy_outputs_and_shards_keep_each_group_whole():
    fast, prompts = _random_gpt2()
    rows = prompts + prompts[:7]  # 15 rows in groups of 3; the rows of a group need not share a prompt here
    plain = fast.generate(rows, 20, 0, 0, temperature=0)
    varied = fast.generate(rows, 20, 0, 0, temperature=0, group=3, sibling_penalty=3.0)
    assert sum(a != b for a, b in zip(plain, varied)) >= 5
    alone = [fast.generate(rows[i : i + 3], 20, 0, 0, temperature=0, group=3, sibling_penalty=3.0)
             for i in range(0, 15, 3)]
    assert [out for group in alone for out in group] == varied  # a group sees its own rows only
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast.SHARD_ROWS = 2  # two shards, of 9 and 6 rows: cut at 8, the third group would be split
        assert fast.generate(rows, 20, 0, 0, temperature=0, group=3, sibling_penalty=3.0) == varied
    finally:
        torch.set_num_threads(threads)


def test_sampled_siblings_share_fewer_pairs_under_the_penalty():
    fast, prompts = _random_gpt2()
    rows = [p for p in prompts for _ in range(4)]  # eight intents, four outputs each

    def distinct_pairs(**penalty) -> float:
        outs = fast.generate(rows, 20, 0, 0, temperature=0.7, generator=torch.Generator().manual_seed(5),
                             **penalty)
        shares = []
        for i in range(0, len(outs), 4):
            pairs = [pair for out in outs[i : i + 4] for pair in zip(out, out[1:])]
            shares.append(len(set(pairs)) / len(pairs))
        return sum(shares) / len(shares)

    assert distinct_pairs(group=4, sibling_penalty=3.0) > distinct_pairs() + 0.05


def test_the_student_passes_the_penalty_on_and_reports_it(tiny_student):
    from udrl.student import load_student

    student = load_student(tiny_student)
    assert student.sampling_for("headline").sibling_penalty == 1.0  # a checkpoint tuned without it
    outs = student.generate(["lost cat"], "headline", n=3, seed=1, temperature=0, sibling_penalty=3.0)[0]
    assert outs[0].sampling["sibling_penalty"] == 3.0
    plain = student.generate(["lost cat"], "headline", n=3, seed=1, temperature=0)[0]
    assert len({o.text for o in plain}) == 1  # greedy siblings in step: one output three times


def test_a_row_drawing_the_pair_a_sibling_drew_at_the_same_step_draws_again():
    pairs = SiblingPairs([[7], [7], [7]], group=3, penalty=2.0, eos_id=0)
    rows, alive = torch.arange(3), torch.ones(3, dtype=torch.bool)
    pairs.add(torch.tensor([5, 5, 5]), rows, alive)  # three siblings that began alike
    scores = torch.zeros(3, 10)
    scores[:, 6] = 4.0
    redraws = []

    def draw(s):
        redraws.append(s.clone())
        return torch.tensor([int(s.argmax())])

    token = pairs.part(scores, torch.tensor([6, 6, 7]), rows, alive, draw)
    # row 1 drew (5, 6) after row 0 did: drawn again with 6 at half its logit, the likeliest still (greedy)
    assert len(redraws) == 1 and redraws[0][0, 6] == 2.0
    assert token.tolist() == [6, 6, 7]  # row 2's (5, 7): 7 is the intent's, never drawn again
