"""Recipes: schema validation, overrides from --set and SGM_* variables, readable errors."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sgm_export.errors import RecipeError
from sgm_export.recipe import Recipe, load_recipe, validate_recipe

RECIPES = sorted(Path(__file__).parents[1].joinpath("recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_validates(path):
    assert isinstance(load_recipe(path, environ={}), Recipe)


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_win_in_order_file_env_set(tmp_path):
    path = write(tmp_path, "model: a\nglasses:\n  strength: 1.5\n  mode: damp\n")
    env = {"SGM_MODEL": "b", "SGM_GLASSES__STRENGTH": "2", "SGM_EXPORT_CACHE": "/ignored", "HOME": "/x"}
    recipe = load_recipe(path, ["glasses.strength=3", "export.formats=[module, folded]"], environ=env)
    assert recipe.model == "b" and recipe.glasses.strength == 3.0 and recipe.glasses.mode == "damp"
    assert recipe.export.formats == ["module", "folded"]


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("glasses:\n  strenght: 2\n", [], "did you mean 'glasses.strength'"),
        ("modle: demo\n", [], "did you mean 'model'"),
        ("glasses:\n  mode: soft\n", [], "glasses.mode"),
        ("score:\n  batch_size: many\n", [], "score.batch_size"),
        ("model: [\n", [], "not valid YAML at line"),
        ("- a\n- b\n", [], "not a mapping"),
        ("", ["glasses.top_k"], "not key=value"),
        ("model: demo\n", ["model.name=x"], "'model' is not a section"),
    ],
)
def test_errors_are_one_readable_line(tmp_path, text, overrides, message):
    with pytest.raises(RecipeError, match=message) as error:
        load_recipe(write(tmp_path, text), overrides, environ={})
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml", environ={})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(["model", "data", "out", "score", "glasses", "export", "push", "extra"]), json_values, max_size=4
    )
)
def test_random_recipes_validate_or_fail_cleanly(values):
    try:
        validate_recipe(values)
    except RecipeError as error:
        assert "\n" not in str(error)


KEYS = ["model", "data", "out", "score", "glasses", "export", "allow_pickle", "trust_remote_code", "pool", "batch_size", "mode", "top_k"]
SCALARS = [
    "demo",
    "1",
    "-3",
    "0.5",
    ".inf",
    ".nan",
    "null",
    "true",
    "2024-13-01",
    "2024-01-01",
    "[module, folded]",
    "{a: 1}",
    "'x'",
    '"',
    "&a x",
    "*a",
    "!!binary xx",
]
yaml_lines = st.builds(
    lambda indent, key, value: f"{'  ' * indent}{key}: {value}",
    st.integers(0, 2),
    st.sampled_from(KEYS) | st.text(max_size=6),
    st.sampled_from(SCALARS) | st.text(max_size=10),
)
yaml_texts = st.lists(yaml_lines | st.text(max_size=30), max_size=8).map("\n".join) | st.text(max_size=200)


def assert_validates_or_fails_cleanly(run):
    try:
        assert isinstance(run(), Recipe)
    except RecipeError as error:
        assert "\n" not in str(error) and error.fix


@settings(max_examples=300, deadline=None)
@given(text=yaml_texts)
def test_random_yaml_text_validates_or_fails_cleanly(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_text(text, encoding="utf-8")
    assert_validates_or_fails_cleanly(lambda: load_recipe(path, environ={}))


set_strings = st.builds(
    lambda key, separator, value: f"{key}{separator}{value}",
    st.sampled_from(["model", "glasses.top_k", "score.batch_size", "export.formats", "glasses", "a.b.c", "", " ", "."])
    | st.text(max_size=12),
    st.sampled_from(["=", "==", "", " = "]),
    st.sampled_from(SCALARS) | st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(overrides=st.lists(set_strings, max_size=3), env_value=st.none() | st.sampled_from(SCALARS) | st.text(max_size=10))
def test_random_set_strings_and_environment_validate_or_fail_cleanly(tmp_path_factory, overrides, env_value):
    path = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    path.write_text("model: demo\n", encoding="utf-8")
    environ = {} if env_value is None else {"SGM_GLASSES__STRENGTH": env_value.replace("\0", "")}
    assert_validates_or_fails_cleanly(lambda: load_recipe(path, overrides, environ=environ))


@pytest.mark.parametrize("name", ["2024-01-01", "yes", "null", "out dir"])
def test_run_out_is_a_path_as_given_never_yaml(tmp_path, name):
    """`run --out 2024-01-01` once failed with "--set out: Input is not a valid path" (YAML read a date)."""
    recipe = load_recipe(write(tmp_path, "model: demo\nout: elsewhere\n"), ["out=ignored"], environ={"SGM_OUT": "env"}, out=Path(name))
    assert recipe.out == Path(name)
