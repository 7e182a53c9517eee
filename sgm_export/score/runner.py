"""The scoring loop: batched forward passes with pooled recording, then AUROC per neuron."""

import json
from collections.abc import Iterator, Sequence

import torch

from sgm_export import __version__
from sgm_export.arch import decoder_projections, decoder_widths
from sgm_export.data.encode import Batch, encode_text_example, length_sorted_batches
from sgm_export.data.examples import TOXIC, Example
from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.errors import DataError
from sgm_export.models.load import LoadedModel
from sgm_export.options import ScoreOptions
from sgm_export.progress import progress_bar
from sgm_export.score.auroc import auroc
from sgm_export.score.files import Scores
from sgm_export.score.overflow import require_finite
from sgm_export.score.recorder import PooledRecorder
from sgm_export.score.store import PooledStore


def pooled_activations(
    loaded: LoadedModel, examples: list[Example], options: ScoreOptions, store: PooledStore | None = None
) -> torch.Tensor:
    """Every example's pooled neurons, all layers side by side: [examples, neurons], float32.

    Only the examples the store still misses are run. Batches are cut from them in length order,
    so a resumed run (whose store holds whole batches) cuts the rest exactly as an uninterrupted
    one would have. The store keeps the rows neuron-major, the layout AUROC sorts without copying.
    """
    model = loaded.model
    store = store if store is not None else PooledStore(len(examples))
    todo = store.missing()
    widths = decoder_widths(model, loaded.family)
    skippable = widths if loaded.family.multimodal else None
    with PooledRecorder(decoder_projections(model, loaded.family), options.pool, skippable) as recorder, torch.inference_mode():
        with progress_bar("Scoring", total=len(examples)) as advance:
            advance(len(examples) - len(todo))
            for batch in example_batches(loaded, [examples[index] for index in todo], options):
                recorder.set_mask(batch.pool_mask.to(loaded.device))
                model(**model_inputs(loaded, batch), use_cache=False, logits_to_keep=1)
                indices = [todo[position] for position in batch.indices]
                pooled = recorder.take()
                require_finite(pooled, widths, loaded.dtype, [examples[index].origin for index in indices])
                store.add(indices, pooled)
                advance(len(indices))
    return store.pooled()


def example_batches(loaded: LoadedModel, examples: list[Example], options: ScoreOptions) -> Iterator[Batch]:
    """Length-sorted batches: through the processor for vision-language models, else tokens only."""
    tokenizer = loaded.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if loaded.processor is not None:
        encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, options.max_length)
        return encoder.batches(examples, options.batch_size, pad_id)
    with_image = [example for example in examples if example.image is not None]
    if with_image:
        raise DataError(
            f"{len(with_image)} examples have an image (the first: {with_image[0].origin}), but {loaded.source.name} is a text-only model",
            "drop the 'image' column, or score a vision-language model",
        )
    encoded = [encode_text_example(tokenizer, example, options.max_length) for example in examples]
    return length_sorted_batches(encoded, options.batch_size, pad_id)


def model_inputs(loaded: LoadedModel, batch: Batch) -> dict[str, torch.Tensor]:
    """The batch's tensors on the model's device; pixel values in the model's dtype."""
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, **batch.inputs}
    return {
        key: value.to(loaded.device, loaded.dtype) if value.is_floating_point() else value.to(loaded.device)
        for key, value in inputs.items()
    }


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


def score_examples(
    loaded: LoadedModel, examples: list[Example], options: ScoreOptions, store: PooledStore | None = None, sources: Sequence[str] = ()
) -> Scores:
    """Score every decoder neuron of the model on the labelled examples (rows already in `store`
    are reused).

    `sources` names where the examples came from (the `--data` specs); it travels in the metadata
    to the glasses and the exports, so that a published model card can say what found its experts.
    """
    pooled = pooled_activations(loaded, examples, options, store)
    widths = decoder_widths(loaded.model, loaded.family)
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
        "limit": "" if options.limit is None else str(options.limit),
        "data": json.dumps(list(sources)),
        "n_toxic": str(n_toxic),
        "n_neutral": str(len(examples) - n_toxic),
        "n_images": str(sum(example.image is not None for example in examples)),
    }
    return Scores(aurocs, mean_toxic, mean_neutral, metadata)
