"""rftlab: reinforcement fine-tuning of LLMs with verifiable rewards, studied bottom-up as a bandit."""

__version__ = "0.1.0"
