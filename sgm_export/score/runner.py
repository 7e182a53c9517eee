"""The scoring loop: batched forward passes with pooled recording, then AUROC per neuron."""

from collections.abc import Iterable, Sequence

import torch

from sgm_export import __version__
from sgm_export.arch import decoder_projections, decoder_widths
from sgm_export.artifacts import ScoresMetadata
from sgm_export.data.encode import Batch, BatchSource, encode_text_example, text_batch_source
from sgm_export.data.examples import TOXIC, Example
from sgm_export.data.multimodal import MultimodalEncoder
from sgm_export.errors import DataError, SgmError
from sgm_export.models.load import LoadedModel
from sgm_export.options import ScoreOptions
from sgm_export.progress import progress_bar
from sgm_export.score.auroc import auroc_of_rows, block_neurons
from sgm_export.score.batching import BatchPlan, activation_bytes_per_token, auto_batch_size, is_out_of_memory
from sgm_export.score.distributed import WHOLE, Share, exchange_rows, gather_slices
from sgm_export.score.files import Scores
from sgm_export.score.overflow import check_finite
from sgm_export.score.recorder import PooledRecorder
from sgm_export.score.store import PooledStore, device_budget_bytes

IMAGE_TOKEN_ALLOWANCE = 1024  # tokens an image may add to a row, for the memory estimate of --batch-size auto
MEAN_ROWS = 4096  # neurons whose class means are taken at a time
FINITE_CHECK_BATCHES = 16  # on a GPU, batches between two checks for NaN (each check waits for the GPU)


def fill_store(
    loaded: LoadedModel, examples: list[Example], options: ScoreOptions, store: PooledStore | None = None, share: Share = WHOLE
) -> PooledStore:
    """Run the forward passes that the store misses (this rank's share of them) and keep each
    example's pooled neurons, all layers side by side, in the store.

    Batches are cut from the missing examples in length order, so a resumed run (whose store
    holds whole batches) cuts the rest exactly as an uninterrupted one would have, and ranks of a
    data-parallel run cut them as a single process would.
    """
    model = loaded.model
    if store is None:
        store = PooledStore(
            len(examples), device=loaded.device, device_budget_bytes=device_budget_bytes(loaded.device, options.store_budget_mb)
        )
    todo = store.missing()
    widths = decoder_widths(model, loaded.family)
    skippable = widths if loaded.family.multimodal else None
    source = batch_source(loaded, [examples[index] for index in todo], options)
    plan = BatchPlan(source.groups, starting_batch_size(loaded, len(todo), options), share.rank, share.world)
    origins = [example.origin for example in examples]
    check_every = 1 if loaded.device.type == "cpu" else FINITE_CHECK_BATCHES
    with (
        PooledRecorder(decoder_projections(model, loaded.family), options.pool, skippable, loaded.device) as recorder,
        torch.inference_mode(),
    ):
        with progress_bar("Scoring", total=len(examples) - len(todo) + plan.n_examples, enabled=share.is_main) as advance:
            advance(len(examples) - len(todo))
            for number, positions in enumerate(plan, 1):
                batch = source.make_batch(positions)
                recorder.set_mask(batch.pool_mask.to(loaded.device))
                try:
                    model(**model_inputs(loaded, batch), use_cache=False, logits_to_keep=1)
                except Exception as error:
                    if not is_out_of_memory(error):
                        raise
                    _retry_smaller(plan, positions, batch, loaded)
                    continue
                store.add([todo[position] for position in positions], recorder.take())
                if number % check_every == 0:
                    check_finite(store, widths, loaded.dtype, origins)
                advance(len(positions))
    check_finite(store, widths, loaded.dtype, origins)
    return store


def pooled_activations(
    loaded: LoadedModel, examples: list[Example], options: ScoreOptions, store: PooledStore | None = None
) -> torch.Tensor:
    """Every example's pooled neurons, all layers side by side: [examples, neurons], float32."""
    return fill_store(loaded, examples, options, store).pooled()


def batch_source(loaded: LoadedModel, examples: list[Example], options: ScoreOptions) -> BatchSource:
    """The examples ready to batch: through the processor for vision-language models, else tokens only."""
    tokenizer = loaded.tokenizer
    pad_id = loaded.pad_token_id
    if loaded.processor is not None:
        encoder = MultimodalEncoder(loaded.processor, loaded.family, loaded.model, options.max_length)
        return encoder.batch_source(examples, pad_id)
    with_image = [example for example in examples if example.image is not None]
    if with_image:
        raise DataError(
            f"{len(with_image)} examples have an image (the first: {with_image[0].origin}), but {loaded.source.name} is a text-only model",
            "drop the 'image' column, or score a vision-language model",
        )
    return text_batch_source([encode_text_example(tokenizer, example, options.max_length) for example in examples], pad_id)


def starting_batch_size(loaded: LoadedModel, n_examples: int, options: ScoreOptions) -> int:
    """`--batch-size`, or for `auto` the size to start from (see `score.batching`)."""
    if options.batch_size != "auto":
        return options.batch_size
    tokens = options.max_length + (IMAGE_TOKEN_ALLOWANCE if loaded.processor is not None else 0)
    return auto_batch_size(loaded.device, n_examples, tokens, activation_bytes_per_token(loaded.model.config, loaded.dtype))


def _retry_smaller(plan: BatchPlan, positions: list[int], batch: Batch, loaded: LoadedModel) -> None:
    """After running out of memory: queue the batch again at half the size, or give up on one example."""
    if loaded.device.type == "cuda":
        torch.cuda.empty_cache()
    if not plan.retry_smaller(positions):
        raise SgmError(
            f"out of memory on {loaded.device} with a single example of {batch.input_ids.shape[1]} tokens",
            "lower --max-length, use --dtype bfloat16, or spread the model over several GPUs with --device-map auto",
        )


def model_inputs(loaded: LoadedModel, batch: Batch) -> dict[str, torch.Tensor]:
    """The batch's tensors on the model's device; pixel values in the model's dtype."""
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, **batch.inputs}
    return {
        key: value.to(loaded.device, loaded.dtype) if value.is_floating_point() else value.to(loaded.device)
        for key, value in inputs.items()
    }


def neuron_statistics(blocks: Iterable[torch.Tensor], labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """AUROC, class means and the non-toxic mean magnitude of every neuron, from blocks of
    [neurons, examples] on any device; flat float32 tensors on the CPU, in the blocks' neuron order."""
    aurocs, mean_toxic, mean_neutral, mean_abs_neutral = [], [], [], []
    toxic = labels == TOXIC
    for block in blocks:
        aurocs.append(auroc_of_rows(block, labels))
        columns = toxic.to(block.device)
        # A few thousand neurons at a time, each class gathered into a contiguous copy: the sums
        # then run the same way whatever the block's size and layout (a data-parallel rank's
        # slice gives the same means as one process), and the copies stay small.
        for part in block.split(MEAN_ROWS):
            mean_toxic.append(part[:, columns].mean(dim=1).cpu())
            neutral = part[:, ~columns]
            mean_neutral.append(neutral.mean(dim=1).cpu())
            mean_abs_neutral.append(neutral.abs().mean(dim=1).cpu())
    return torch.cat(aurocs), torch.cat(mean_toxic), torch.cat(mean_neutral), torch.cat(mean_abs_neutral)


def store_statistics(store: PooledStore, labels: torch.Tensor, device: torch.device, share: Share) -> tuple[torch.Tensor, ...]:
    """`neuron_statistics` of every stored neuron; with several ranks, each computes its slice of
    the neurons from the rows all ranks exchange, and every rank ends with all of them."""
    if share.world == 1:
        return neuron_statistics(store.neuron_blocks(block_neurons(device), device), labels)
    done = store.done_indices()
    values = exchange_rows(done, store.rows(done), store.n_examples, share, device)
    rows = values.T
    size = block_neurons(device)
    blocks = (rows[start : start + size].to(device) for start in range(0, rows.shape[0], size))
    return tuple(gather_slices(statistic, share, device) for statistic in neuron_statistics(blocks, labels))


def score_examples(
    loaded: LoadedModel,
    examples: list[Example],
    options: ScoreOptions,
    store: PooledStore | None = None,
    sources: Sequence[str] = (),
    share: Share = WHOLE,
) -> Scores:
    """Score every decoder neuron of the model on the labelled examples (rows already in `store`
    are reused; with several ranks, this one computes its `share`).

    `sources` names where the examples came from (the `--data` specs); it travels in the metadata
    to the glasses and the exports, so that a published model card can say what found its experts.
    """
    store = fill_store(loaded, examples, options, store, share)
    widths = decoder_widths(loaded.model, loaded.family)
    labels = torch.tensor([example.label for example in examples])
    statistics = store_statistics(store, labels, loaded.device, share)
    aurocs, mean_toxic, mean_neutral, mean_abs_neutral = (list(statistic.split(widths)) for statistic in statistics)
    vocab, vocabulary_note = neuron_vocabulary(loaded, options) if share.is_main else (None, "")
    n_toxic = int((labels == TOXIC).sum())
    metadata = ScoresMetadata(
        sgm_export_version=__version__,
        model=loaded.source.hub_id or loaded.source.name,
        model_type=loaded.model.config.model_type,
        family=loaded.family.name,
        pool=options.pool,
        max_length=options.max_length,
        limit=options.limit,
        data=list(sources),
        n_toxic=n_toxic,
        n_neutral=len(examples) - n_toxic,
        n_images=sum(example.image is not None for example in examples),
        vocabulary=vocabulary_note,
    )
    return Scores(aurocs, mean_toxic, mean_neutral, metadata, mean_abs_neutral, vocab)


def neuron_vocabulary(loaded: LoadedModel, options: ScoreOptions) -> tuple[list[torch.Tensor] | None, str]:
    """The vocabulary toxicity of every neuron and how its toxic words were found, or None and
    the reason there is none (kept in the metadata, so that `glasses --rank vocab` can say it)."""
    if not options.vocabulary:
        return None, "not computed (--no-vocabulary)"
    from sgm_export.data.judges import load_judge
    from sgm_export.score.vocabulary import toxic_token_ids, vocabulary_toxicity

    judge = load_judge(options.vocab_judge)
    toxic_ids = toxic_token_ids(loaded.tokenizer, judge, options.vocab_threshold)
    try:
        vocab = vocabulary_toxicity(loaded.model, loaded.family, toxic_ids)
    except SgmError as error:
        return None, f"not available: {error.problem}"
    return vocab, f"{len(toxic_ids)} toxic words ({options.vocab_judge} >= {options.vocab_threshold})"
