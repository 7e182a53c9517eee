"""sgm-export: bake SGM safety glasses into model checkpoints.

SGM ("safety glasses" for multimodal LLMs, arXiv 2512.15052) builds on AurA (Suau et al., ICML
2024): find the MLP neurons of the language decoder whose activation separates toxic from
non-toxic inputs, and scale them down by a fixed per-neuron factor. This package scores the
neurons, turns the scores into a scaling vector (the glasses), and writes checkpoints that carry
it. See the README for the command line and `docs/` for the Python API.
"""

__version__ = "0.1.0"
