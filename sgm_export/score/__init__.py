"""Scoring: record every decoder MLP neuron, pool it over the scored text, and rate how well it
separates toxic from non-toxic inputs (exact AUROC for all neurons at once)."""
