"""The teacher as a judge of English: its mean token log-probability of an output, given the task's prompt.

An output the teacher would likely have written itself is real English on the task; an invented or mangled
word ("Snela Pig", "squidered"), a clause that drifts off or a sentence cut short costs log-probability, the
end-of-turn token included. Scoring a given text is one forward pass over the intent and the output (the
task's system and few-shot turns stay in llama.cpp's context between calls), far cheaper than generating,
so the teacher can rank many student samples.
"""

from __future__ import annotations

from pathlib import Path

from udrl.tasks import get_task
from udrl.teacher import TeacherUnavailable, open_gguf

END_OF_TURN = "<|im_end|>"  # SmolLM2's ChatML end of turn: the teacher's stop after an answer


class TeacherFluency:
    """Mean token log-probability of outputs under a chat GGUF (by default the teacher proxy) through
    llama.cpp; the prompt is the one the teacher writes from (:meth:`udrl.tasks.Task.messages`)."""

    def __init__(self, model_path: str | Path | None = None, n_threads: int | None = None, n_ctx: int = 1024):
        self.llm, path = open_gguf(model_path, n_threads, n_ctx, logits_all=True)
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise TeacherUnavailable(f"{path.name} has no chat template to build the teacher's prompt from")
        self.format = Jinja2ChatFormatter(template, eos_token=END_OF_TURN, bos_token="")
        self.end = self.llm.tokenize(END_OF_TURN.encode(), add_bos=False, special=True)

    def score(self, task: str, intent: str, outputs: list[str]) -> list[float]:
        """The teacher's mean log-probability per token of each output (and its end of turn) for the intent."""
        import torch

        prompt = self.format(messages=get_task(task).messages(intent)).prompt
        head = self.llm.tokenize(prompt.encode(), add_bos=False, special=True)
        scores = []
        for output in outputs:
            answer = self.llm.tokenize(output.encode(), add_bos=False, special=False) + self.end
            tokens = head + answer
            if len(tokens) > self.llm.n_ctx():
                raise ValueError(f"prompt and output take {len(tokens)} tokens, over the context of "
                                 f"{self.llm.n_ctx()}")
            # reuse what the context already holds (the task's turns, and the intent for its next output)
            shared = self.llm.longest_token_prefix(self.llm._input_ids.tolist(), tokens) if self.llm.n_tokens else 0
            self.llm.n_tokens = min(shared, len(tokens) - 1)
            self.llm.eval(tokens[self.llm.n_tokens:])
            logprobs = torch.log_softmax(torch.tensor(self.llm.scores[len(head) - 1 : len(tokens) - 1]), dim=-1)
            scores.append(float(logprobs[torch.arange(len(answer)), torch.tensor(answer)].mean()))
        return scores
