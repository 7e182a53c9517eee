"""`sgm-export push` and `run` with `push.repo_id`, against a fake Hub on 127.0.0.1 (tests/fake_hub.py)
that records what huggingface_hub sends: one commit with every file, the repository created first,
refusals before any request, and a token that shows up nowhere but in the Authorization header."""

import secrets

import pytest

from sgm_export.export import export_checkpoint
from sgm_export.export.files import recorded_files
from sgm_export.publish.card import PLACEHOLDER_ID
from tests.cli_helpers import assert_clean_usage_error, sgm
from tests.fake_hub import USER, FakeHub


@pytest.fixture
def token() -> str:
    return f"hf_{secrets.token_urlsafe(24)}"


@pytest.fixture
def hub(token):
    with FakeHub(token) as hub:
        yield hub


def hub_env(hub: FakeHub | None, token: str, tmp_path) -> dict[str, str]:
    """The push subprocess's environment: the fake Hub, the token, and every place it may write
    (HF_HOME, TMPDIR) inside tmp_path, so that all of it can be searched for the token."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {
        "HF_ENDPOINT": hub.endpoint if hub else "http://127.0.0.1:9",
        "HF_TOKEN": token,
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",  # plain LFS, which the fake Hub speaks
        "HF_HOME": str(tmp_path / "hf_home"),
        "TMPDIR": str(tmp_path / "tmp"),
    }


def expected_files(folder) -> list[str]:
    return sorted([*recorded_files(folder), "sgm_export.json"])


def assert_token_nowhere(token: str, outputs: list[str], root) -> None:
    for output in outputs:
        assert token not in output
    written = [path for path in root.rglob("*") if path.is_file()]
    assert written, "the search must cover the files the test wrote"
    for path in written:
        assert token.encode() not in path.read_bytes(), path


@pytest.fixture
def exported(licensed_llama, tiny_glasses, tmp_path):
    return export_checkpoint(str(licensed_llama), tiny_glasses, tmp_path / "model", format="module")


def test_dry_run_lists_exactly_the_folder_and_uploads_nothing(exported, hub, token, tmp_path):
    result = sgm("push", exported, "acme/safe-tiny", "--dry-run", env=hub_env(hub, token, tmp_path))
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "dry run: nothing is uploaded"
    listed = [line.split()[0] for line in lines[2 : lines.index("")]]
    on_disk = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert listed == on_disk == expected_files(exported)
    sizes = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[2 : lines.index("")]}
    assert sizes["tokenizer_config.json"].strip() == f"{(exported / 'tokenizer_config.json').stat().st_size} B"
    assert f"in one commit of {len(on_disk)} files" in lines[1]
    card = result.stdout.split("the card (README.md) says:")[1]
    assert "license: other" in card and "- detoxification" in card and "glasses_sha256:" in card
    assert "with SGM safety glasses" in card and "sections: What was changed, How to use, Reproduce" in card
    assert hub.requests == []


def test_push_makes_one_commit_with_every_file_and_never_shows_the_token(exported, hub, token, tmp_path):
    env = {**hub_env(hub, token, tmp_path), "HF_DEBUG": "1", "SGM_EXPORT_NO_PROGRESS": ""}  # all the logs and progress bars
    result = sgm("--debug", "push", exported, "acme/safe-tiny", env=env)
    assert result.code == 0, result.stderr

    calls = [(r.method, r.path) for r in hub.requests if r.path != "/api/agent-harnesses"]  # skip hf's own telemetry probe
    assert calls[:2] == [("GET", "/api/whoami-v2"), ("POST", "/api/repos/create")]
    assert calls[-1] == ("POST", "/api/models/acme/safe-tiny/commit/main")
    assert [path for _, path in calls].count("/api/repos/create") == 1
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in hub.requests if r.path.startswith("/api/models/"))
    assert result.stdout.index(f"as {USER} (token 'ci-token', role write)") < result.stdout.index("pushed in one commit")
    assert f"note: the card's loading snippets name '{PLACEHOLDER_ID}'" in result.stdout  # and how to name this repository

    (commit,) = hub.commits
    assert commit.repo_id == "acme/safe-tiny" and commit.revision == "main"
    assert sorted(commit.files) == expected_files(exported)
    assert all(commit.files[name] == (exported / name).read_bytes() for name in commit.files)
    assert "model.sgm.safetensors" in commit.lfs_paths and "README.md" not in commit.lfs_paths  # big files took the LFS path
    assert f"Upload {len(commit.lfs_paths)} LFS files: 100%" in result.stderr  # the upload's progress bar
    assert_token_nowhere(token, [result.stdout, result.stderr], tmp_path)


def test_private_push_to_a_branch(exported, hub, token, tmp_path):
    env = hub_env(hub, token, tmp_path)
    result = sgm("push", exported, "safe-tiny", "--private", "--revision", "dev", env=env)
    assert result.code == 0, result.stderr
    assert hub.repos[f"{USER}/safe-tiny"].private
    assert ("POST", f"/api/models/{USER}/safe-tiny/branch/dev") in [(r.method, r.path) for r in hub.requests]
    (commit,) = hub.commits
    assert commit.revision == "dev" and sorted(commit.files) == expected_files(exported)

    assert sgm("push", exported, "acme/public", env=env).code == 0
    refused = sgm("push", exported, "acme/public", "--private", env=env)
    assert_clean_usage_error(refused, "acme/public", "is public", "--private")
    assert len(hub.commits) == 2  # nothing was uploaded into the public repository the second time


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda folder: (folder / "README.md").unlink(), "has no model card"),
        (lambda folder: (folder / "sgm_glasses.safetensors").unlink(), "sgm_glasses.safetensors is missing"),
        (lambda folder: (folder / "sgm_glasses.safetensors").write_bytes(b"not glasses"), "sgm_glasses.safetensors differs"),
        (lambda folder: (folder / "notes.txt").write_text("hi"), "notes.txt is not recorded"),
        (lambda folder: (folder / "sgm_export.json").unlink(), "no sgm_export.json"),
    ],
)
def test_push_refuses_a_folder_that_fails_its_checks(exported, hub, token, tmp_path, damage, message):
    damage(exported)
    for extra in ([], ["--dry-run"]):
        assert_clean_usage_error(sgm("push", exported, "acme/safe-tiny", *extra, env=hub_env(hub, token, tmp_path)), "refusing", message)
    assert hub.requests == []  # refused before a single request


def test_push_refuses_glasses_that_do_not_match_the_card(exported, licensed_llama, tiny_glasses, tmp_path, hub, token):
    from sgm_export.artifacts import read_export_manifest
    from sgm_export.export.files import write_manifest
    from sgm_export.glasses import Glasses

    other = Glasses([scale[::-1] for scale in tiny_glasses.scales], tiny_glasses.metadata)
    replacement = export_checkpoint(str(licensed_llama), other, tmp_path / "other")
    (exported / "sgm_glasses.safetensors").write_bytes((replacement / "sgm_glasses.safetensors").read_bytes())
    write_manifest(exported, read_export_manifest(exported))  # a manifest rewritten to match: only the card still tells the truth
    result = sgm("push", exported, "acme/safe-tiny", env=hub_env(hub, token, tmp_path))
    assert_clean_usage_error(result, "refusing", "not the ones the card describes")
    assert hub.requests == []


def test_push_without_a_token_says_how_to_log_in(exported, hub, tmp_path):
    result = sgm("push", exported, "acme/safe-tiny", env=hub_env(hub, "", tmp_path))
    assert_clean_usage_error(result, "no Hugging Face token", "HF_TOKEN", "hf auth login")
    assert hub.commits == []


def test_a_refused_token_is_one_line_without_the_token(exported, token, tmp_path):
    with FakeHub("hf_the_right_one") as hub:
        result = sgm("push", exported, "acme/safe-tiny", env=hub_env(hub, token, tmp_path))
    assert_clean_usage_error(result, "could not ask the Hub who the token belongs to", "HF_TOKEN")
    assert token not in result.stderr + result.stdout and hub.commits == []


def test_bad_repo_id_is_a_usage_error(exported, tmp_path):
    assert_clean_usage_error(sgm("push", exported, "a/b/c", "--dry-run"), "not a Hub repository id")


def test_run_pushes_its_export_at_the_end(tiny_llama, labelled_jsonl, hub, token, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model: {tiny_llama}\ndata: [{labelled_jsonl}]\nexport:\n  formats: [module, folded]\npush:\n  repo_id: acme/run-tiny\n  format: folded\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    result = sgm("run", recipe, "--out", out, env=hub_env(hub, token, tmp_path))
    assert result.code == 0, result.stderr
    (commit,) = hub.commits
    assert commit.repo_id == "acme/run-tiny" and sorted(commit.files) == expected_files(out / "model-folded")
    card = commit.files["README.md"].decode()
    assert f"```yaml\n{(out / 'recipe.yaml').read_text().rstrip()}\n```" in card  # the recipe, verbatim
    assert 'from_pretrained("acme/run-tiny")' in card and "note:" not in result.stdout
    assert f'from_pretrained("{PLACEHOLDER_ID}"' in (out / "model" / "README.md").read_text()  # the module export is not pushed
    assert_token_nowhere(token, [result.stdout, result.stderr], tmp_path)


def test_run_checks_the_token_before_any_work(tiny_llama, labelled_jsonl, hub, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {tiny_llama}\ndata: [{labelled_jsonl}]\npush:\n  repo_id: acme/run-tiny\n", encoding="utf-8")
    result = sgm("run", recipe, "--out", tmp_path / "out", env=hub_env(hub, "", tmp_path))
    assert_clean_usage_error(result, "no Hugging Face token")
    assert not (tmp_path / "out").exists()
    bad = sgm("run", recipe, "--out", tmp_path / "out", "--set", "push.format=folded", env=hub_env(hub, "x", tmp_path))
    assert_clean_usage_error(bad, "push.format", "export.formats")
