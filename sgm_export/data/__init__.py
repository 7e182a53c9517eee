"""Labelled examples: where they come from (files, the Hub, built-in sets) and how they become
token batches with a pooling mask."""
