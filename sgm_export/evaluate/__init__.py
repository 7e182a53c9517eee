"""Evaluation: harmful rate of sampled continuations on held-out toxic prompts (standard and
adversarial), judged by a pluggable judge, and fluency (perplexity, KL divergence) on held-out
neutral text, for the base model and its variants (glasses, safety pre-prompt, both)."""
