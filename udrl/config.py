"""Defaults, in one place: the constants several stages share, and one dataclass per pipeline stage.

The command line (``python -m udrl <stage>``) is built from these dataclasses by transformers'
``HfArgumentParser``, and each stage's library function takes its dataclass, so the same call from Python
and from the shell does the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from udrl.tasks import TASK_NAMES

# -- shared constants -----------------------------------------------------------------------------------
TASKS_ARG = ",".join(TASK_NAMES)
LENGTH_COMMAND_RANGE = (5, 60)  # words a user may ask for (the app's slider, the student, evaluate)
LENGTH_GRID = (8, 16, 24, 32, 40)  # the length commands every task is measured on (evaluate, the app's sweep)
MAX_INTENT_CHARS = 500  # the longest intent the app, the API and the student accept
TEACHER_TEMPERATURE, TEACHER_TOP_P = 0.7, 0.95  # how the teacher samples when compared with the student
DEFAULT_TEMPERATURE, DEFAULT_TOP_P = 0.7, 0.95  # the student's sampling when its checkpoint has no settings
TUNING_WINDOW = (60, 80)  # (skip, count): the test intents `tune` chooses settings on, past `evaluate`'s first ones


def _arg(default, help: str, **extra):
    """A dataclass field with its command-line help (a list default is copied for each instance)."""
    if isinstance(default, list):
        return field(default_factory=default.copy, metadata={"help": help, **extra})
    return field(default=default, metadata={"help": help, **extra})


def task_list(value: str) -> list[str]:
    """Comma-separated task names, checked against the task registry."""
    tasks = [t.strip() for t in value.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_NAMES]
    if unknown or not tasks:
        raise ValueError(f"unknown task {', '.join(unknown) or repr(value)}; choose from {', '.join(TASK_NAMES)}")
    return tasks


def float_list(value: str, name: str, lo: float, hi: float) -> tuple[float, ...]:
    """Comma-separated numbers within [lo, hi]."""
    try:
        numbers = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{name} takes comma-separated numbers, got {value!r}") from None
    if not numbers or not all(lo <= x <= hi for x in numbers):
        raise ValueError(f"{name} values must lie in {lo:g}..{hi:g}, got {value!r}")
    return numbers


def _check_intent_window(cfg) -> None:
    if (cfg.limit is not None and cfg.limit < 1) or cfg.skip < 0 or cfg.samples < 2:
        raise ValueError("limit must be at least 1, skip at least 0 and samples at least 2 (diversity needs two "
                         "samples)")


@dataclass
class IntentsConfig:
    out: str = _arg("data/intents", "folder for train.txt and test.txt")
    train: int = _arg(2000, "training intents")
    test: int = _arg(330, "test intents")
    seed: int = _arg(13, "random seed")
    open: bool = _arg(False, "open-vocabulary intents from WordNet (apt-get install wordnet-base)")
    exclude: str | None = _arg(None, "intents file whose words open-vocabulary test intents must not use")


@dataclass
class GenerateConfig:
    intents: str = _arg("data/intents", "folder with train.txt and test.txt")
    tasks: str = _arg(TASKS_ARG, "comma-separated tasks")
    samples: int = _arg(2, "samples per (intent, task)")
    backend: str = _arg("llama.cpp", "teacher backend", choices=["llama.cpp", "transformers", "openai"])
    model: str | None = _arg(None, "GGUF path, Hugging Face id or server model name")
    # ``extend``: ``--url A --url B`` and ``--url A B`` both give [A, B] (argparse's ``+`` alone keeps the last)
    url: list[str] = _arg([], "OpenAI-compatible base URL, repeated for several servers; without it, "
                              "UDRL_TEACHER_URL (comma-separated)", action="extend")
    out: str = _arg("data/distill", "folder of JSONL shards")
    shard_size: int = _arg(2000, "records per shard")
    limit: int | None = _arg(None, "stop after this many new samples")
    seed: int = _arg(0, "random seed")
    worker: str = _arg("0/1", "I/N: this process takes the I-th of N parts of the intents")
    threads: int | None = _arg(None, "llama.cpp threads (default: all cores)")
    batch_size: int | None = _arg(None, "transformers backend batch size")
    chunk: int = _arg(32, "intents per scheduling block (larger on a GPU; with --backend openai, a larger "
                          "chunk keeps more requests in flight)")
    raw: bool = _arg(False, "skip rewards (label later with `score`)")
    # the openai backend: a few requests in flight keep one local server busy; a vLLM or TGI server batches
    # hundreds (--concurrency 256 --chunk 2048)
    concurrency: int = _arg(4, "openai backend: requests in flight over all servers")
    retries: int = _arg(5, "openai backend: retries of a request after a 429, 5xx, connection error or timeout")
    backoff: float = _arg(1.0, "openai backend: seconds before the first retry, doubled for each next one "
                               "(with jitter)")
    max_failures: int = _arg(3, "openai backend: failures in a row that take a server out of the rotation")
    timeout: float = _arg(120.0, "openai backend: seconds to wait for one answer")

    def __post_init__(self):
        task_list(self.tasks)
        if self.samples < 1:
            raise ValueError("samples must be at least 1")
        if self.concurrency < 1 or self.retries < 0 or self.max_failures < 1:
            raise ValueError("concurrency and max_failures must be at least 1, retries at least 0")
        if self.backoff < 0 or self.timeout <= 0:
            raise ValueError("backoff must be at least 0 and timeout above 0")
        self.worker_share()

    def worker_share(self) -> tuple[int, int]:
        """(index, count) of ``worker``."""
        try:
            index, count = (int(x) for x in self.worker.split("/"))
        except ValueError:
            raise ValueError(f"worker must look like 0/2, got {self.worker!r}") from None
        if not 0 <= index < count:
            raise ValueError(f"worker must look like 0/2, got {self.worker!r}")
        return index, count


@dataclass
class ScoreConfig:
    raw: str = _arg("runs/raw", "folder of raw JSONL shards (written by generate --raw)")
    out: str = _arg("data/distill", "corpus folder to append to")


@dataclass
class DatacardConfig:
    corpus: str = _arg("data/distill", "corpus folder")
    out: str = _arg("data/README.md", "where to write the data card")
    figures: str = _arg("data/figures", "folder for the reward histograms")
    augmented: str | None = _arg(None, "also describe the records written by `augment`")


@dataclass
class AugmentConfig:
    corpus: str = _arg("data/distill", "corpus folder")
    out: str = _arg("data/augmented", "folder for the augmented shards")
    copies: int = _arg(8, "variants per training record")
    pool: str = _arg("words", "replacement subjects: single English words, or WordNet nouns and names (multi-word "
                              "and rare ones, none of the open-vocabulary test set's)", choices=["words", "wordnet"])
    seed: int = _arg(0, "random seed")

    def __post_init__(self):
        if self.copies < 1:
            raise ValueError("copies must be at least 1")


@dataclass
class TrainConfig:
    corpus: str = _arg("data/distill", "corpus folder")
    augmented: str | None = _arg(None, "folders written by `augment` or `rollouts` (comma-separated), added to "
                                       "training")
    feedback: str | None = _arg(None, "folder written by `feedback` (outputs annotators preferred), added to "
                                      "training")
    out: str = _arg("checkpoints/student", "checkpoint folder")
    state_dir: str | None = _arg(None, "resumable training state (default runs/<out name>-state)")
    init: str | None = _arg(None, "pretrained GPT-2 id or path, or a student checkpoint to continue")
    tokenizer: str = _arg("corpus", "a new student's tokenizer: a byte-level BPE of vocab_size tokens fitted on the "
                                    "corpus, or on the corpus and WordNet's English (words, glosses, examples), or "
                                    "the teacher's own", choices=["corpus", "english", "teacher"])
    init_embeddings: str = _arg("random", "a new student's token embeddings: random, or the teacher's projected to "
                                          "its width", choices=["random", "teacher"])
    vocab_size: int = _arg(4096, "BPE vocabulary of a new student (tokenizer corpus or english)")
    n_layer: int = _arg(4, "transformer blocks")
    n_embd: int = _arg(192, "width")
    n_head: int = _arg(4, "attention heads")
    n_positions: int = _arg(128, "position table (prompt + output tokens)")
    relevance_bins: int = _arg(8, "relevance command tokens per task")
    intent_slots: int = _arg(0, "subject words of an intent the student writes as one token each (intent-word "
                                "slots, udrl.student.slots); 0: none, or those of the student continued")
    epochs: int = _arg(3, "passes over the training records")
    batch_size: int = _arg(64, "records per step")
    lr: float = _arg(3e-3, "peak learning rate (cosine schedule)")
    weight_decay: float = _arg(0.05, "AdamW weight decay")
    warmup: float = _arg(0.05, "share of steps warming up")
    dropout: float = _arg(0.1, "dropout of a new student")
    max_steps: int | None = _arg(None, "stop after this many steps")
    seed: int = _arg(0, "random seed")
    resume: bool = _arg(False, "continue from the saved training state")
    progress: bool = _arg(True, "progress bar")
    distil_guidance: bool = _arg(False, "continue --init (a tuned student) to sample in one pass what its "
                                        "guided sampling draws")
    word_loss: float = _arg(0.0, "weight of the word loss: minus the log of the probability the model gives the "
                                 "tokens the word guard allows at each output position, so that the model alone "
                                 "keeps to real words (0: off)")
    word_samples: str | None = _arg(None, "folders written by `rollouts --keep mistakes` (comma-separated): the "
                                           "student's own outputs with invented words, learnt from by the word loss "
                                           "alone")
    phrase_cap: int = _arg(0, "keep at most this many of the student's own rollout records per task that share a "
                              "4-word phrase without an intent word, so that stock phrases earlier rounds let "
                              "through are not taught again (0: no cap)")

    def __post_init__(self):
        if self.word_loss < 0:
            raise ValueError("word_loss is a weight: 0 (off) or more")
        if self.word_samples and not self.word_loss:
            raise ValueError("word_samples are learnt from by the word loss alone: pass --word-loss too")
        if self.intent_slots < 0:
            raise ValueError("intent_slots is a count of words: 0 or more")
        if self.phrase_cap < 0:
            raise ValueError("phrase_cap is a count of records: 0 (no cap) or more")
        if self.word_loss and self.intent_slots:
            raise ValueError("the word loss's rule does not read intent-word slots: pass one of --word-loss "
                             "and --intent-slots")
        if self.word_loss and self.distil_guidance:
            raise ValueError("word_loss applies to the token loss; guidance distillation has its own (pass one)")


@dataclass
class RolloutsConfig:
    checkpoint: str = _arg("checkpoints/student", "student checkpoint that writes the rollouts")
    intents: str = _arg("data/intents/open/train.txt", "intents file (training intents)")
    held_out: str = _arg("data/intents/test.txt,data/intents/open/test.txt",
                         "comma-separated intents files never rolled out (the test sets)")
    tasks: str = _arg(TASKS_ARG, "comma-separated tasks")
    samples: int = _arg(2, "outputs per intent and task")
    skip: int = _arg(0, "intents to pass over first, counted after the held-out ones are removed (another "
                        "round on other intents)")
    limit: int | None = _arg(None, "use the first N intents (after the skipped ones)")
    block: int = _arg(64, "intents decoded together under one (relevance, length) command")
    word_guard: bool = _arg(False, "decode with the word guard: the round teaches the model the guard's common "
                                   "words (its outputs are still filtered and relabelled)")
    temperature: float | None = _arg(None, "sampling temperature (default: the checkpoint's tuned value per task); "
                                           "higher gives the round more varied outputs")
    phrase_cap: int = _arg(0, "keep at most this many outputs per task that share a 4-word phrase without an "
                              "intent word, so the round does not teach stock phrases (0: no cap)")
    teacher_rank: int = _arg(0, "keep only the N outputs of each intent and task that the teacher finds "
                                "likeliest (mean token log-probability, udrl.fluency), among the clean ones; "
                                "0 keeps every clean output")
    keep: str = _arg("clean", "which outputs to keep: clean ones (the subject kept, in real words) for train "
                              "--augmented, or mistakes (outputs holding a word in no word list, decoded without "
                              "the guard) for train --word-samples", choices=["clean", "mistakes"])
    out: str = _arg("runs/rollouts", "folder for the relabelled rollouts (pass it to train --augmented)")
    seed: int = _arg(0, "random seed (commands and sampling)")

    def __post_init__(self):
        task_list(self.tasks)
        if self.samples < 1 or self.block < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("samples, block and limit must be at least 1")
        if self.skip < 0 or self.phrase_cap < 0 or self.teacher_rank < 0:
            raise ValueError("skip, phrase_cap and teacher_rank must be at least 0")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError("temperature must be above 0")
        if self.keep == "mistakes" and (self.word_guard or self.teacher_rank or self.phrase_cap):
            raise ValueError("mistakes are the model's own: keep them without --word-guard, --teacher-rank or "
                             "--phrase-cap")


@dataclass
class FeedbackConfig:
    ratings: str = _arg("data/annotations/ratings.sqlite", "ratings database of the app's Annotate tab "
                                                           "(UDRL_RATINGS_DB there)")
    out: str = _arg("data/feedback", "folder for the annotator records (rewritten on every run)")
    min_votes: int = _arg(1, "votes an output needs (annotators' last verdicts) to become a record")
    held_out: str = _arg("data/intents/test.txt,data/intents/open/test.txt",
                         "comma-separated intents files: records of their intents get split test, which train "
                         "leaves out, so evaluation stays on unseen intents")

    def __post_init__(self):
        if self.min_votes < 1:
            raise ValueError("min_votes must be at least 1")


@dataclass
class EvaluateConfig:
    checkpoint: str = _arg("checkpoints/student", "student checkpoint")
    intents: str = _arg("data/intents/test.txt", "intents file")
    tasks: str = _arg(TASKS_ARG, "comma-separated tasks")
    samples: int = _arg(3, "samples per intent and command")
    limit: int | None = _arg(40, "number of intents (after the skipped ones)")
    skip: int = _arg(0, f"intents to pass over first (tune uses {TUNING_WINDOW[0]}..)")
    outside_tuning: bool = _arg(False, "leave out the intents `tune` chose the checkpoint's settings on")
    teacher: str = _arg("llama.cpp", "teacher backend", choices=["llama.cpp", "transformers", "none"])
    json: str = _arg("runs/eval.json", "where to write the result")
    report: str | None = _arg(None, "folder for a Markdown report with figures")
    seed: int = _arg(0, "random seed")
    word_guard: bool = _arg(False, "sample the student with the word guard (udrl/student/guard.py); without it, "
                                   "the model's own outputs are measured")

    def __post_init__(self):
        task_list(self.tasks)
        _check_intent_window(self)


@dataclass
class TuneConfig:
    checkpoint: str = _arg("checkpoints/student", "student checkpoint")
    intents: str = _arg("data/intents/test.txt", "intents file")
    tasks: str = _arg(TASKS_ARG, "comma-separated tasks")
    skip: int = _arg(TUNING_WINDOW[0], "intents to pass over (those `evaluate --limit` uses)")
    limit: int = _arg(TUNING_WINDOW[1], "number of tuning intents after the skipped ones")
    samples: int = _arg(3, "samples per intent and command (diversity falls as samples are added: use as many "
                           "as the evaluation does)")
    teacher: str = _arg("llama.cpp", "teacher backend", choices=["llama.cpp", "transformers"])
    # plain sampling (scale 1) is left out by default: without guidance the per-sample pearson of achieved vs
    # commanded relevance stayed below the 0.6 goal on every task; a student with its guidance distilled into
    # the weights (``train --distil-guidance``) is tuned at scale 1 alone
    guidance_scales: str = _arg("1.5,2.0,2.5,3.0,3.5,4.0", "grid (1 = no guidance: the grid for a student "
                                                          "trained with --distil-guidance)")
    temperatures: str = _arg("0.9,1.1,1.3,1.5,1.7", "grid")
    top_ps: str = _arg("0.8,0.9,0.95", "grid (a tighter nucleus can take a higher temperature)")
    # a penalty on repeats raises diversity, which a lower temperature can then trade for relevance
    repetition_penalties: str = _arg("1.0,1.3", "grid (1 = none; applied to the tokens the output holds)")
    sibling_penalties: str = _arg("1.0", "grid (1 = none; applied to tokens that would repeat a token pair another "
                                         "output of the intent holds)")
    trials: str | None = _arg(None, "where every trial goes (default: the file the checkpoint's sampling.json "
                                    "names, else runs/tune/<checkpoint name>.json)")
    seed: int = _arg(0, "random seed")

    def __post_init__(self):
        task_list(self.tasks)
        _check_intent_window(self)
        self.grid()

    def grid(self) -> dict[str, tuple[float, ...]]:
        """The sampling grid as numbers."""
        return {"guidance_scales": float_list(self.guidance_scales, "guidance_scales", 1.0, 5.0),
                "temperatures": float_list(self.temperatures, "temperatures", 0.0, 2.0),
                "top_ps": float_list(self.top_ps, "top_ps", 0.05, 1.0),
                "repetition_penalties": float_list(self.repetition_penalties, "repetition_penalties", 1.0, 3.0),
                "sibling_penalties": float_list(self.sibling_penalties, "sibling_penalties", 1.0, 5.0)}


@dataclass
class BenchConfig:
    checkpoint: str = _arg("checkpoints/student", "student checkpoint")
    intents: str = _arg("data/intents/test.txt", "intents file")
    task: str = _arg("image_prompt", "task")
    prompts: int = _arg(24, "prompts, one at a time")
    batch_size: int = _arg(32, "batch size of the throughput measurement")
    length: int | None = _arg(None, "length command (default: the teacher's mean length)")
    json: str | None = _arg(None, "where to write the result")

    def __post_init__(self):
        task_list(self.task)
        if self.prompts < 1 or self.batch_size < 1:
            raise ValueError("prompts and batch_size must be at least 1")


@dataclass
class SideBySideConfig:
    checkpoint: str = _arg("checkpoints/student", "student checkpoint")
    intents: str = _arg("data/intents/open/test.txt", "intents file")
    tasks: str = _arg(TASKS_ARG, "comma-separated tasks")
    skip: int = _arg(0, "intents to pass over")
    limit: int = _arg(20, "intents after the skipped ones (items = intents x tasks)")
    teacher: str = _arg("llama.cpp", "teacher backend", choices=["llama.cpp", "transformers"])
    out: str = _arg("runs/sidebyside", "folder for pairs.md (blind), key.json and examples.md")
    seed: int = _arg(0, "random seed (outputs, item order and sides)")
    word_guard: bool = _arg(False, "sample the student with the word guard")

    def __post_init__(self):
        task_list(self.tasks)
        if self.limit < 1 or self.skip < 0:
            raise ValueError("limit must be at least 1 and skip at least 0")


@dataclass
class VerdictsConfig:
    folder: str = _arg("runs/sidebyside", "a sidebyside folder: its key.json and the readers' reader-*.json")
    out: str | None = _arg(None, "JSON file for the counts (default: verdicts.json in the folder)")


STAGES: dict[str, tuple[type, str]] = {
    "intents": (IntentsConfig, "build data/intents/train.txt and test.txt"),
    "generate": (GenerateConfig, "teacher samples for intents x tasks, scored, as JSONL shards"),
    "score": (ScoreConfig, "label raw samples with rewards into the corpus"),
    "datacard": (DatacardConfig, "write data/README.md from the corpus"),
    "augment": (AugmentConfig, "subject-swapped, re-scored copies of the training records"),
    "rollouts": (RolloutsConfig, "student outputs on new intents, relabelled by the rewards, for the next round"),
    "feedback": (FeedbackConfig, "turn the outputs annotators preferred into corpus records for train"),
    "train": (TrainConfig, "train the UDRL student on the corpus"),
    "evaluate": (EvaluateConfig, "command sweeps, controllability and teacher comparison"),
    "tune": (TuneConfig, "choose each task's sampling settings and calibrate its length command"),
    "bench": (BenchConfig, "student vs teacher speed, side by side"),
    "sidebyside": (SideBySideConfig, "student and teacher outputs on the same intents, as blind pairs and a table"),
    "verdicts": (VerdictsConfig, "count blind readers' verdicts on sidebyside pairs against the key"),
}
