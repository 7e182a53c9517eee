"""Evaluation: the rate arithmetic, prompts and categories, reproducible batched sampling, and the
fluency measures against independent computations, on tiny models."""

import math

import pytest
import torch

from sgm_export.apply import glasses_applied
from sgm_export.data.examples import Example
from sgm_export.data.judges import Judge
from sgm_export.evaluate import plots
from sgm_export.evaluate.fluency import ScoringModel, generations_fluency, neutral_fluency
from sgm_export.evaluate.generate import SamplingSettings, encode_prompt, sample_continuations
from sgm_export.evaluate.metrics import paired_difference, pareto_front, rates, rates_by_group, reduction_factor
from sgm_export.evaluate.prompts import CATEGORIES, EvalPrompt, adversarial_prompts, prompt_categories, toxic_prompts, trigger_templates
from sgm_export.evaluate.runner import ADVERSARIAL, STANDARD, PromptSet, Variant, evaluate_variants
from sgm_export.glasses import Glasses
from sgm_export.models.load import load_model
from sgm_export.options import EvalOptions

T, F = True, False


def test_both_harmful_rates_and_their_standard_errors():
    verdicts = [[T, F], [F, F], [T, T], [F, T]]
    result = rates(verdicts)
    per_prompt = [0.5, 0.0, 1.0, 0.5]
    se = math.sqrt(sum((x - 0.5) ** 2 for x in per_prompt) / 3 / 4)
    assert result["harmful_rate"] == 0.5 and result["harmful_rate_se"] == pytest.approx(se)
    assert result["harmful_prompt_rate"] == 0.75 and result["harmful_prompt_rate_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert result["n_prompts"] == 4 and result["n_continuations"] == 8
    assert result["harmful_rate_ci95"] == pytest.approx([0.5 - 1.96 * se, 0.5 + 1.96 * se])


def test_rates_per_category_and_modality():
    prompts = [EvalPrompt("a", ("insult", "threat")), EvalPrompt("b", ("insult",)), EvalPrompt("c", ())]
    grouped = rates_by_group(prompts, [[T, T], [F, F], [T, F]])
    assert grouped["overall"]["harmful_rate"] == pytest.approx(0.5)
    assert grouped["per_category"]["insult"]["harmful_rate"] == 0.5 and grouped["per_category"]["insult"]["n_prompts"] == 2
    assert grouped["per_category"]["threat"]["harmful_prompt_rate"] == 1.0
    assert set(grouped["per_category"]) == {"insult", "threat"}
    assert grouped["by_modality"] == {"text": grouped["overall"]}


def test_paired_difference_reduction_and_pareto_front():
    difference = paired_difference([[F, F], [T, F]], [[T, T], [T, F]])
    assert difference["difference"] == pytest.approx(-0.5) and difference["se"] == pytest.approx(0.5)
    assert difference["ci95"] == pytest.approx([-0.5 - 1.96 * 0.5, -0.5 + 1.96 * 0.5])
    assert (
        reduction_factor(0.3, 0.1) == pytest.approx(3.0) and reduction_factor(0.3, 0.0) == math.inf and reduction_factor(0.0, 0.0) is None
    )
    points = [(0.30, 10.0), (0.10, 12.0), (0.20, 13.0), (0.05, 20.0), (0.10, 12.0)]
    assert pareto_front(points) == [True, True, False, True, True]


@pytest.mark.parametrize("n_layers", [2, 3, 18])
def test_the_layer_plot_numbers_layers_as_whole_numbers(n_layers):
    figure = plots.experts_per_layer_figure([(3 * layer) % 7 for layer in range(n_layers)])
    figure.canvas.draw()
    axes = figure.axes[0]
    low, high = axes.get_xlim()
    ticks = [tick for tick in axes.get_xticks() if low <= tick <= high]
    assert len(ticks) >= 2 and all(float(tick).is_integer() for tick in ticks)
    assert all(float(tick).is_integer() for tick in axes.get_yticks())
    plots.plt.close(figure)


def test_the_category_plot_counts_prompts_and_reads_in_percent():
    prompts = [EvalPrompt("a", ("insult", "threat")), EvalPrompt("b", ("insult",)), EvalPrompt("c", ())]
    verdicts = {"base": [[T, T], [F, T], [T, F]], "glasses": [[F, F], [F, T], [F, F]]}
    sections = {name: {STANDARD: rates_by_group(prompts, judged)} for name, judged in verdicts.items()}
    figure = plots.categories_figure(sections, STANDARD)
    axes = figure.axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["overall (3 prompts)", "insult (2 prompts)", "threat (1 prompt)"]
    assert axes.yaxis.get_major_formatter()(0.25, 0) == "25%"
    heights = [bar.get_height() for bar in axes.patches]
    assert heights == pytest.approx([2 / 3, 0.75, 1.0, 1 / 6, 0.25, 0.0])  # base bars, then glasses bars
    plots.plt.close(figure)


def test_categories_are_perspective_scores_above_one_half():
    example = Example("x", 1, extra={"categories": {"toxicity": 0.9, "insult": 0.51, "threat": 0.5, "profanity": 0.99}})
    assert prompt_categories(example) == ("profanity", "insult")
    assert prompt_categories(Example("x", 1, extra={"categories": ["threat", "custom"]})) == ("threat", "custom")
    prompts = toxic_prompts("builtin:rtp-toxic:heldout", 50)
    assert len(prompts) == 50 and all(set(p.categories) <= set(CATEGORIES) for p in prompts)
    assert sum("profanity" in p.categories for p in prompts) > 10


def test_adversarial_prompts_wrap_each_prompt_in_turn():
    templates = trigger_templates()
    assert len(templates) >= 3 and all(template.count("{prompt}") == 1 for template in templates)
    prompts = [EvalPrompt(f"prompt {i}", ("insult",)) for i in range(len(templates) + 1)]
    wrapped = adversarial_prompts(prompts)
    assert [p.template for p in wrapped] == [*range(len(templates)), 0]
    assert wrapped[1].text == templates[1].replace("{prompt}", "prompt 1") and wrapped[1].categories == ("insult",)


def settings(**overrides) -> SamplingSettings:
    values = dict(samples=2, max_new_tokens=6, top_k=50, temperature=1.0, seed=3, batch_size=4, max_length=32)
    return SamplingSettings(**{**values, **overrides})


PROMPTS = [EvalPrompt(text) for text in ("you are", "the cat sat on the mat and then it", "why would anyone", "I told him to")]


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_left_padded_batches_continue_each_prompt_as_if_alone(tiny_models, model_type):
    loaded = load_model(str(tiny_models[model_type]), "cpu", "float32")
    greedy = settings(samples=1, top_k=1)
    together = sample_continuations(loaded, PROMPTS, "", greedy)
    for index, prompt in enumerate(PROMPTS):
        alone = sample_continuations(loaded, [prompt], "", greedy)
        assert alone.tokens[0] == together.tokens[index]


def test_same_seed_same_continuations_and_identity_glasses_change_nothing(tiny_llama):
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    first = sample_continuations(loaded, PROMPTS, "", settings())
    assert [len(per_prompt) for per_prompt in first.tokens] == [2] * len(PROMPTS)
    assert sample_continuations(loaded, PROMPTS, "", settings()).tokens == first.tokens
    assert sample_continuations(loaded, PROMPTS, "", settings(seed=4)).tokens != first.tokens
    identity = Glasses([torch.ones(48), torch.ones(48)])
    with glasses_applied(loaded.model, loaded.family, identity):
        assert sample_continuations(loaded, PROMPTS, "", settings()).tokens == first.tokens


def test_preprompt_comes_first_after_bos(tiny_llama):
    tokenizer = load_model(str(tiny_llama), "cpu", "float32").tokenizer
    ids = encode_prompt(tokenizer, "you are", "Be kind.", 32)
    expected = tokenizer("")["input_ids"] + tokenizer("Be kind.\n\n", add_special_tokens=False)["input_ids"]
    assert ids[: len(expected)] == expected and tokenizer.decode(ids[len(expected) :]) == "you are"


def reference_nll(model, ids: list[int], scored_from: int) -> tuple[float, int]:
    """Sum of -log p(token) over ids[scored_from:], one unpadded sequence at a time."""
    with torch.no_grad():
        logprobs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    targets = torch.tensor(ids[scored_from:])
    return float(-logprobs[scored_from - 1 : len(ids) - 1].gather(1, targets.unsqueeze(1)).sum()), len(targets)


def test_perplexity_and_kl_match_an_unbatched_computation(tiny_llama):
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    tokenizer = loaded.tokenizer
    texts = [Example(text, 0) for text in ("a man rides a bicycle along the river", "she opened the window", "hi")]
    glasses = Glasses([torch.linspace(0, 1, 48), torch.full((48,), 0.5)])
    models = [
        ScoringModel("base", loaded, lambda: glasses_applied(loaded.model, loaded.family, Glasses([torch.ones(48)] * 2)), ""),
        ScoringModel("glasses", loaded, lambda: glasses_applied(loaded.model, loaded.family, glasses), "Be kind."),
    ]
    result = neutral_fluency(models, texts, max_length=32)
    bos = tokenizer("")["input_ids"]
    context = encode_prompt(tokenizer, "", "Be kind.", 32)
    nll = count = kl = 0.0
    for example in texts:
        text_ids = tokenizer(example.text, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            base_lp = loaded.model(torch.tensor([bos + text_ids])).logits[0, len(bos) - 1 : -1].float().log_softmax(-1)
            with glasses_applied(loaded.model, loaded.family, glasses):
                ids = context + text_ids
                glasses_lp = loaded.model(torch.tensor([ids])).logits[0, len(context) - 1 : -1].float().log_softmax(-1)
        nll -= float(glasses_lp.gather(1, torch.tensor(text_ids).unsqueeze(1)).sum())
        kl += float((base_lp.exp() * (base_lp - glasses_lp)).sum())
        count += len(text_ids)
    assert result["glasses"].n_tokens == count
    assert result["glasses"].perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)
    assert result["glasses"].kl == pytest.approx(kl / count, rel=1e-4) and result["glasses"].kl > 0
    assert result["base"].kl == pytest.approx(0.0, abs=1e-6)


def test_perplexity_of_generations_matches_an_unbatched_computation(tiny_llama):
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    sampled = sample_continuations(loaded, PROMPTS, "Be kind.", settings())
    result = generations_fluency(loaded, PROMPTS, sampled.tokens, max_length=32, batch_size=3)
    nll = count = 0
    for prompt, per_prompt in zip(PROMPTS, sampled.tokens):
        context = encode_prompt(loaded.tokenizer, prompt.text, "", 32)
        for tokens in per_prompt:
            if tokens:
                value, n = reference_nll(loaded.model, context + tokens, len(context))
                nll, count = nll + value, count + n
    assert result.n_tokens == count
    assert result.perplexity == pytest.approx(math.exp(nll / count), rel=1e-4)


def test_harmful_rates_follow_fake_judges_with_known_answers(tiny_llama):
    """Two judges: one calls a continuation harmful when it contains the letter e, the other when
    it contains an a. Each judge's rates must be exactly what the generations and its rule give,
    prompt by prompt; the first judge's figures are also where a single-judge report has them."""
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    rules = {"has-e": "e", "has-a": "a"}
    judges = [
        Judge(name, 0.5, lambda texts, letter=letter: [1.0 if letter in text else 0.0 for text in texts]) for name, letter in rules.items()
    ]
    prompts = [EvalPrompt(t, ("insult",) if i % 2 else ("threat",)) for i, t in enumerate(("you are", "why would", "the dog", "stop it"))]
    options = EvalOptions(samples=3, max_new_tokens=5, batch_size=6, neutral_limit=2)
    glasses = Glasses([torch.zeros(48), torch.ones(48)])
    variants = [Variant("base", loaded), Variant("glasses", loaded, glasses)]
    sets = [PromptSet(STANDARD, prompts), PromptSet(ADVERSARIAL, adversarial_prompts(prompts))]
    results = evaluate_variants(variants, sets, {"quiet": [Example("a quiet day", 0)]}, judges, options)
    flags = {}
    for name, result in results.items():
        for prompt_set in sets:
            rows = [row for row in result.generations if row["set"] == prompt_set.name]
            assert len(rows) == 3 * len(prompts)
            for judge, letter in rules.items():
                per_prompt = [[letter in row["continuation"] for row in rows if row["prompt"] == p.text] for p in prompt_set.prompts]
                flags[name, prompt_set.name, judge] = per_prompt
                part = result.section["by_judge"][judge][prompt_set.name]
                assert part["overall"]["harmful_rate"] == pytest.approx(sum(map(sum, per_prompt)) / 12)
                assert part["overall"]["harmful_prompt_rate"] == pytest.approx(sum(map(any, per_prompt)) / 4)
                insult = [f for f, p in zip(per_prompt, prompt_set.prompts) if "insult" in p.categories]
                assert part["per_category"]["insult"]["harmful_rate"] == pytest.approx(sum(map(sum, insult)) / 6)
            assert all(row["scores"] == {j: float(letter in row["continuation"]) for j, letter in rules.items()} for row in rows)
            assert all(row["score"] == row["scores"]["has-e"] for row in rows)
            assert result.section[prompt_set.name] == result.section["by_judge"]["has-e"][prompt_set.name]
        assert result.section["harmful_rate"] == result.section[STANDARD]["overall"]["harmful_rate"]
        assert result.section["perplexity"] > 1 and result.section["n_prompts"] == 4
    for judge in rules:
        paired = results["glasses"].section["by_judge"][judge][STANDARD]["vs_base"]
        differences = [sum(g) / 3 - sum(b) / 3 for g, b in zip(flags["glasses", STANDARD, judge], flags["base", STANDARD, judge])]
        assert paired["difference"] == pytest.approx(sum(differences) / 4)
        assert paired["ci95"] == pytest.approx([paired["difference"] - 1.96 * paired["se"], paired["difference"] + 1.96 * paired["se"]])
    assert flags["base", STANDARD, "has-e"] != flags["base", STANDARD, "has-a"]  # the two judges disagree somewhere
    assert results["base"].section["kl_from_base"] == pytest.approx(0.0, abs=1e-6)
    assert results["glasses"].section["kl_from_base"] > 0


def test_fluency_per_neutral_source_and_pooled_over_all_tokens(tiny_llama):
    loaded = load_model(str(tiny_llama), "cpu", "float32")
    judge = Judge("never", 0.5, lambda texts: [0.0] * len(texts))
    neutral = {
        "captions": [Example(t, 0) for t in ("a man rides a bicycle along the river", "she opened the window")],
        "wiki": [Example(t, 0) for t in ("The game takes place during the Second Europan War.", "Tower Building of the Arsenal.")],
    }
    glasses = Glasses([torch.full((48,), 0.5), torch.ones(48)])
    variants = [Variant("base", loaded), Variant("glasses", loaded, glasses)]
    options = EvalOptions(samples=1, max_new_tokens=2, adversarial=False)
    results = evaluate_variants(variants, [PromptSet(STANDARD, PROMPTS[:1])], neutral, [judge], options)
    models = [ScoringModel(v.name, v.loaded, v.active, v.preprompt) for v in variants]
    separate = {source: neutral_fluency(models, texts, options.max_length) for source, texts in neutral.items()}
    section = results["glasses"].section
    for source, fluency in separate.items():
        figures = section["fluency_by_source"][source]
        assert figures["perplexity"] == pytest.approx(fluency["glasses"].perplexity, rel=1e-9)
        assert figures["kl_from_base"] == pytest.approx(fluency["glasses"].kl, rel=1e-9)
        change = fluency["glasses"].perplexity / fluency["base"].perplexity - 1
        assert figures["n_texts"] == 2 and figures["perplexity_change"] == pytest.approx(change)
    n = sum(fluency["glasses"].n_tokens for fluency in separate.values())
    nll = sum(math.log(fluency["glasses"].perplexity) * fluency["glasses"].n_tokens for fluency in separate.values())
    assert section["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-9) and section["n_neutral_tokens"] == n
    assert section["fluency_by_source"]["captions"]["perplexity"] != pytest.approx(section["fluency_by_source"]["wiki"]["perplexity"])
