"""Every setting of every stage, as pydantic models.

One definition serves three front ends: the recipe file (these models nest inside `Recipe`), the
command line (each field becomes a `--flag`, see `cli/options.py`) and the Python API. Field
descriptions are the help texts.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Pool = Literal["mean", "max"]
Device = Literal["auto", "cpu", "cuda"]
VERIFY_TOLERANCE = 1e-4  # the largest |logit difference| `verify` accepts unless told otherwise
DType = Literal["auto", "float32", "bfloat16", "float16"]
DeviceMap = Literal["auto", "balanced", "sequential"]
# The glasses' modes, each with the line the model card shows (glasses.py computes the scales).
MODES = {
    "aura": "AurA: each expert scaled by 1 - 2 x strength x (AUROC - 0.5)",
    "damp": "Damp: each expert scaled by the constant alpha",
    "det0": "Det0: each expert switched off (scale 0)",
}
Mode = Literal[tuple(MODES)]
Rank = Literal["auroc", "vocab", "combined"]
ExportFormat = Literal["module", "folded", "onnx"]
OnnxDType = Literal["float32", "float16"]


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must not be silently ignored), and so are infinite or NaN
    numbers (`strength: .inf` would turn scales into NaN)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ScoreOptions(StrictModel):
    """How neurons are recorded and pooled."""

    pool: Pool = Field("mean", description="pool each neuron over the text tokens by mean or max (as in AurA)")
    batch_size: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        16, description="examples per forward pass; auto: the largest that fits (halved on running out of GPU memory)"
    )
    max_length: int = Field(128, ge=2, description="longest token sequence; longer examples are cut")
    device: Device = Field("auto", description="where the forward passes run: auto picks CUDA when present")
    dtype: DType = Field("auto", description="dtype of the forward passes (auto: bfloat16 on GPU, float32 on CPU)")
    device_map: DeviceMap | None = Field(
        None, description="spread a model too large for one GPU over all of them (accelerate's device_map: auto, balanced, sequential)"
    )
    store_budget_mb: float | None = Field(
        None, ge=0, description="GPU memory for pooled activations before they spill to host memory; none: half the free memory"
    )
    limit: int | None = Field(None, ge=1, description="use at most this many examples from each data source")
    vocabulary: bool = Field(
        True, description="also rate each neuron by how strongly its output promotes toxic words (for glasses --rank vocab)"
    )
    vocab_judge: str = Field("profanity-check", description="finds the toxic words of the vocabulary for the vocabulary rating")
    vocab_threshold: float = Field(0.8, ge=0.0, le=1.0, description="a vocabulary word is toxic when the judge scores it at least this")


class GlassesOptions(StrictModel):
    """How scores become per-neuron scales (and, with `shift`, offsets)."""

    mode: Mode = Field("aura", description="aura: alpha = 1 - 2*strength*(AUROC-0.5); damp: constant --alpha; det0: alpha = 0")
    rank: Rank = Field(
        "auroc",
        description="what makes an expert: auroc (AUROC above --threshold), vocab (promotes toxic words; needs --top-k), "
        "combined (both: AUROC above --threshold, ranked by vocabulary)",
    )
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="neurons with AUROC above this are experts (rank auroc and combined)")
    top_k: int | None = Field(None, ge=1, description="keep only the K best-ranked experts (all layers together)")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="the constant scale of damp mode")
    strength: float = Field(1.0, ge=0.0, description="multiplies the AUROC-based suppression of aura mode")
    guard: float = Field(
        10.0,
        ge=0.0,
        description="never scale a heavy neuron: mean |activation| on non-toxic data above this many times the median (0: off)",
    )
    shift: bool = Field(
        False,
        description="pull experts towards their non-toxic mean instead of towards 0: x -> alpha*x + (1-alpha)*mean (module and ONNX exports)",
    )
    amplify: float | None = Field(
        None,
        ge=1.0,
        description="aura mode: also amplify anti-toxic neurons (AUROC below 0.5) by 1 + 2*strength*(0.5-AUROC), up to this cap",
    )

    @model_validator(mode="after")
    def _vocab_needs_top_k(self) -> "GlassesOptions":
        """Every neuron has a vocabulary rating, so without a count the ranking selects nothing in particular."""
        if self.rank == "vocab" and self.top_k is None:
            raise ValueError("rank vocab needs top_k: how many of the best-ranked neurons to scale")
        return self


class CollectOptions(StrictModel):
    """How the model's own continuations of toxic prompts become domain-matched scoring rows."""

    samples: int = Field(2, ge=1, description="continuations sampled per prompt (k)")
    max_new_tokens: int = Field(32, ge=1, description="tokens generated per continuation")
    sample_top_k: int = Field(50, ge=0, description="sample from the K most likely tokens (0: the full distribution)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature")
    seed: int = Field(0, description="seed of the sampling")
    judge: str = Field("profanity-check", description="labels the continuations: profanity-check, hatesonar, hf:MODEL, module:function")
    toxic_at: float = Field(0.5, ge=0.0, le=1.0, description="a continuation the judge scores at least this is a toxic row")
    clean_at: float = Field(0.2, ge=0.0, le=1.0, description="a continuation the judge scores at most this is a non-toxic row")
    clean_prompts: bool = Field(True, description="add the source prompts the judge rates clean (<= clean_at) as non-toxic rows")
    limit: int | None = Field(None, ge=1, description="continue at most this many prompts from each source (the first ones)")
    batch_size: int = Field(32, ge=1, description="sequences per forward pass")
    max_length: int = Field(64, ge=2, description="longest prompt, in tokens (longer ones keep their end)")
    device: Device = Field("auto", description="where the model runs: auto picks CUDA when present")
    dtype: DType = Field("auto", description="dtype of the model (auto: bfloat16 on GPU, float32 on CPU)")

    @model_validator(mode="after")
    def _clean_below_toxic(self) -> "CollectOptions":
        """A row cannot be both toxic and clean."""
        if self.clean_at >= self.toxic_at:
            raise ValueError(f"clean_at ({self.clean_at}) must be below toxic_at ({self.toxic_at})")
        return self


class OnnxOptions(StrictModel):
    """How the ONNX graphs are written."""

    dtype: OnnxDType = Field("float32", description="float32 or float16 weights, activations and KV cache")


class ExportOptions(StrictModel):
    """Which checkpoints to write."""

    formats: list[ExportFormat] = Field(["module"], min_length=1, description="module (custom code, default), folded (plain weights), onnx")
    verify: bool = Field(True, description="check each checkpoint's logits against the base model with hooked glasses")
    link: bool = Field(False, description="hard-link unchanged weight files instead of copying them")
    onnx: OnnxOptions = Field(default_factory=OnnxOptions)

    @field_validator("formats")
    @classmethod
    def _each_format_once(cls, formats: list[str]) -> list[str]:
        """Each format has one folder in the output, so naming one twice is a mistake."""
        if len(set(formats)) != len(formats):
            raise ValueError("each format may appear only once")
        return formats


class PushOptions(StrictModel):
    """Where an export is published on the Hugging Face Hub."""

    repo_id: str | None = Field(None, description="Hub repository (NAME or OWNER/NAME); `run` pushes only when this is set")
    private: bool = Field(False, description="create the repository private, and refuse to push into an existing public one")
    revision: str | None = Field(None, description="branch to push to, created when missing; none is main")
    format: ExportFormat | None = Field(None, description="which checkpoint `run` pushes (default: the first of export.formats)")


class EvalOptions(StrictModel):
    """How the base model and the variant are evaluated: prompts, sampling, judge, fluency data."""

    prompts: str = Field("builtin:rtp-toxic:heldout", description="toxic prompts to continue (never those used for scoring)")
    neutral: str = Field("builtin:neutral:heldout", description="neutral texts for perplexity and KL divergence")
    neutral_extra: list[str] = Field(
        [], description="more neutral texts, read whole (no --neutral-limit), pooled into perplexity and KL and reported on their own"
    )
    limit: int | None = Field(None, ge=1, description="use at most this many toxic prompts (the first ones)")
    neutral_limit: int | None = Field(200, ge=1, description="use at most this many neutral texts")
    samples: int = Field(5, ge=1, description="sampled continuations per prompt (k)")
    max_new_tokens: int = Field(32, ge=1, description="tokens generated per continuation")
    sample_top_k: int = Field(50, ge=0, description="sample from the K most likely tokens (0: the full distribution)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature")
    seed: int = Field(0, description="seed of the sampling; base and variants use the same seeds")
    adversarial: bool = Field(True, description="also evaluate the prompts wrapped in adversarial trigger templates")
    visual_triggers: bool = Field(
        False, description="vision-language models: also evaluate the prompts drawn into an image (typographic) and beside a photo"
    )
    judge: list[str] = Field(
        ["profanity-check"],
        min_length=1,
        description="judges, side by side (the first gives the headline figures): profanity-check, hatesonar, hf:MODEL, module:function",
    )
    judge_threshold: float = Field(0.5, ge=0.0, le=1.0, description="a continuation is harmful when the judge's score is at least this")
    preprompt: str | None = Field(None, description="a safety system prompt, evaluated alone and combined with the glasses (SGM*)")
    batch_size: int = Field(32, ge=1, description="continuations decoded together (and sequences per forward pass)")
    max_length: int = Field(64, ge=2, description="longest prompt or neutral text, in tokens")
    device: Device = Field("auto", description="where the model runs: auto picks CUDA when present")
    dtype: DType = Field("auto", description="dtype of the model (auto: bfloat16 on GPU, float32 on CPU)")
    device_map: DeviceMap | None = Field(
        None, description="spread a model too large for one GPU over all of them (accelerate's device_map: auto, balanced, sequential)"
    )

    @field_validator("judge", "neutral_extra", mode="before")
    @classmethod
    def _one_name_is_a_list(cls, value):
        """`judge: hatesonar` in a recipe (one name, as before judges could be combined) is a list of one."""
        return [value] if isinstance(value, str) else value

    @field_validator("judge", "neutral_extra")
    @classmethod
    def _each_once(cls, names: list[str]) -> list[str]:
        """Results are keyed by judge and by source, so naming one twice is a mistake."""
        if len(set(names)) != len(names):
            raise ValueError("each name may appear only once")
        return names
