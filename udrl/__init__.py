"""udrl-distill: distil a teacher LLM into a small GPT-2 steered by reward commands (upside-down RL)."""

import sys


def invocation(subcommand: str, function: str) -> str:
    """How a result was produced, for its JSON: the command line when run as ``python -m udrl
    <subcommand>``, else the Python function that was called."""
    if sys.argv[1:2] == [subcommand]:
        return "python -m udrl " + " ".join(sys.argv[1:])
    return function
