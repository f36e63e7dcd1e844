"""One source of defaults: the command line is built from the stage dataclasses the library functions take."""

import dataclasses
import inspect

import pytest

from udrl.__main__ import main, parse
from udrl.config import STAGES, GenerateConfig


@pytest.mark.parametrize("stage", list(STAGES))
def test_cli_defaults_are_the_library_defaults(stage):
    name, cfg = parse([stage])
    config = STAGES[stage][0]
    assert name == stage and cfg == config()
    # every field is an option, with its help
    for f in dataclasses.fields(config):
        assert f.metadata.get("help"), f"{stage}.{f.name} has no help"


def test_lower_level_functions_default_to_the_stage_config():
    from udrl.generate import generate_corpus, score_raw

    params = inspect.signature(generate_corpus).parameters
    assert params["shard_size"].default == GenerateConfig.shard_size == 2000
    assert params["chunk"].default == GenerateConfig.chunk
    assert inspect.signature(score_raw).parameters["shard_size"].default == GenerateConfig.shard_size


def test_options_parse_into_the_config():
    _, cfg = parse(["train", "--n-embd", "64", "--epochs", "1", "--resume", "--no-progress"])
    assert (cfg.n_embd, cfg.epochs, cfg.resume, cfg.progress) == (64, 1, True, False)
    _, cfg = parse(["generate", "--worker", "1/2", "--tasks", "headline"])
    assert cfg.worker_share() == (1, 2)
    _, cfg = parse(["generate", "--url", "http://a:8000/v1", "--url", "http://b:8000/v1", "--concurrency", "64"])
    assert cfg.url == ["http://a:8000/v1", "http://b:8000/v1"] and cfg.concurrency == 64


@pytest.mark.parametrize(("args", "message"), [
    (["generate", "--worker", "3/2"], "worker must look like 0/2"),
    (["generate", "--tasks", "poems"], "unknown task poems"),
    (["evaluate", "--samples", "1"], "at least 2"),
    (["train", "--epochs", "many"], "invalid"),
    (["nonsense"], "invalid choice"),
])
def test_bad_options_are_one_line(capsys, args, message):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
