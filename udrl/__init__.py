"""udrl-distill: distil a teacher LLM into a small GPT-2 steered by reward commands (upside-down RL)."""
