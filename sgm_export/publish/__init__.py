"""Publishing exports: the model card every export carries, and pushing a checked export to the
Hugging Face Hub in one commit.

- `card`: renders README.md from the export folder itself (its sgm_export.json, `eval/`, `onnx/`);
- `evaluation`: the evaluation section, from an attached `eval` report;
- `refresh`: renders the card of an existing export again (after attaching a report or ONNX);
- `checks`: what makes a folder safe to publish (card, manifest and glasses agree);
- `hub`: the file plan, the account, and the one-commit upload.
"""
