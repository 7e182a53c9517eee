"""The scoring loop: batched forward passes with pooled recording, then AUROC per neuron."""

import torch

from sgm_export import __version__
from sgm_export.arch import decoder_projections, neuron_widths
from sgm_export.data.encode import encode_text_example, length_sorted_batches
from sgm_export.data.examples import TOXIC, Example
from sgm_export.models.load import LoadedModel
from sgm_export.options import ScoreOptions
from sgm_export.progress import progress_bar
from sgm_export.score.auroc import auroc
from sgm_export.score.files import Scores
from sgm_export.score.recorder import PooledRecorder


def pooled_activations(loaded: LoadedModel, examples: list[Example], options: ScoreOptions) -> torch.Tensor:
    """Every example's pooled neurons, all layers side by side: [examples, neurons], float32."""
    model, tokenizer = loaded.model, loaded.tokenizer
    projections = decoder_projections(model, loaded.family)
    encoded = [encode_text_example(tokenizer, example, options.max_length) for example in examples]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    store: torch.Tensor | None = None
    with PooledRecorder(projections, options.pool) as recorder, torch.inference_mode():
        with progress_bar("Scoring", total=len(encoded)) as advance:
            for batch in length_sorted_batches(encoded, options.batch_size, pad_id):
                recorder.set_mask(batch.pool_mask.to(loaded.device))
                model(
                    input_ids=batch.input_ids.to(loaded.device),
                    attention_mask=batch.attention_mask.to(loaded.device),
                    use_cache=False,
                    logits_to_keep=1,
                )
                pooled = recorder.take().to("cpu")
                if store is None:
                    store = torch.empty((len(encoded), pooled.shape[1]), dtype=torch.float32)
                store[batch.indices] = pooled
                advance(len(batch.indices))
    return store


def scores_from_pooled(
    pooled: torch.Tensor, labels: torch.Tensor, widths: list[int], device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """AUROC and class means per layer, from pooled activations of all layers side by side."""
    values = pooled.to(device)
    labels = labels.to(device)
    toxic = labels == TOXIC
    all_auroc = auroc(values, labels).cpu()
    mean_toxic = values[toxic].mean(dim=0).cpu()
    mean_neutral = values[~toxic].mean(dim=0).cpu()
    return list(all_auroc.split(widths)), list(mean_toxic.split(widths)), list(mean_neutral.split(widths))


def score_examples(loaded: LoadedModel, examples: list[Example], options: ScoreOptions) -> Scores:
    """Score every decoder neuron of the model on the labelled examples."""
    pooled = pooled_activations(loaded, examples, options)
    widths = neuron_widths(loaded.model, loaded.family)
    labels = torch.tensor([example.label for example in examples])
    aurocs, mean_toxic, mean_neutral = scores_from_pooled(pooled, labels, widths, loaded.device)
    n_toxic = int((labels == TOXIC).sum())
    metadata = {
        "sgm_export_version": __version__,
        "model": loaded.source.hub_id or loaded.source.name,
        "model_type": loaded.model.config.model_type,
        "family": loaded.family.name,
        "pool": options.pool,
        "max_length": str(options.max_length),
        "n_toxic": str(n_toxic),
        "n_neutral": str(len(examples) - n_toxic),
    }
    return Scores(aurocs, mean_toxic, mean_neutral, metadata)
