"""Pushing a checked export to the Hugging Face Hub in one commit.

Why `create_commit` and not `upload_folder`: in huggingface_hub 2.x with `hf_xet` installed (a
dependency), `upload_folder` streams a large folder as several commits ("part 2", ...) and splits
a commit that fails, so a reader could see half a model; `upload_large_folder` (1.x; gone in 2.x,
where its streamed upload became `upload_folder`'s) is multi-commit by design. `create_commit`
with one add operation per file first uploads every large file (through Xet, or plain LFS with
`HF_HUB_DISABLE_XET=1`) with progress bars, then makes exactly one commit. It is resumable in
practice: run the push again after an interruption and the data already on the Hub is not sent
twice (Xet deduplicates chunks, LFS skips objects it has, unchanged files leave the commit).

The token comes from `HF_TOKEN` or the local login (`hf auth login`) and is used by huggingface_hub
alone: this module only asks whether there is one (and takes it out of error messages); it never
prints, logs or stores it.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.utils import HFValidationError, disable_progress_bars, enable_progress_bars, get_token, validate_repo_id

from sgm_export import __version__
from sgm_export.errors import SgmError
from sgm_export.export.files import recorded_files
from sgm_export.layout import MANIFEST_FILE
from sgm_export.models.manifest import read_manifest
from sgm_export.progress import progress_enabled
from sgm_export.publish.card import CARD_BLOCK, PLACEHOLDER_ID, load_card
from sgm_export.publish.checks import require_publishable

DEFAULT_BRANCH = "main"
SIZE_UNITS = ("B", "kB", "MB", "GB", "TB")
T = TypeVar("T")


@dataclass(frozen=True)
class PlannedFile:
    """One file of the upload: its path in the repository (as in the folder) and its size."""

    path: str
    size: int


@dataclass
class PushPlan:
    """Exactly what a push uploads, after the folder passed every check."""

    folder: Path
    files: list[PlannedFile]
    card: ModelCard

    @property
    def total_size(self) -> int:
        return sum(file.size for file in self.files)


def plan_push(folder: Path) -> PushPlan:
    """Check the folder and list what would be uploaded: every recorded file plus the manifest."""
    folder = Path(folder)
    require_publishable(folder)
    names = sorted([*recorded_files(folder), MANIFEST_FILE])
    return PushPlan(folder, [PlannedFile(name, (folder / name).stat().st_size) for name in names], load_card(folder))


def check_repo_id(repo_id: str) -> None:
    """A one-line error for a repository id the Hub would refuse."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise SgmError(f"{repo_id!r} is not a Hub repository id", "write it as NAME or OWNER/NAME, e.g. my-org/gemma-3-270m-sgm") from None


def hub_account(api: HfApi | None = None) -> dict[str, Any]:
    """Who the token belongs to (`whoami`), before anything is uploaded."""
    api = api or HfApi()
    if get_token() is None:
        raise SgmError("no Hugging Face token found", "set HF_TOKEN or log in with `hf auth login`")
    return _hub_call("ask the Hub who the token belongs to", api.whoami)


def describe_account(account: dict[str, Any]) -> str:
    """`name (token 'label', role write)`: who pushes, never the token itself."""
    token = (account.get("auth") or {}).get("accessToken") or {}
    details = []
    if token.get("displayName"):
        details.append(f"token {token['displayName']!r}")
    if token.get("role"):
        details.append(f"role {token['role']}")
    return account.get("name", "?") + (f" ({', '.join(details)})" if details else "")


def push_plan(plan: PushPlan, repo_id: str, private: bool = False, revision: str | None = None, api: HfApi | None = None) -> CommitInfo:
    """Create the repository if needed, then upload every planned file in one commit."""
    api = api or HfApi()
    check_repo_id(repo_id)
    # The CLI silences huggingface_hub's bars (they clutter weight loading); an upload is where they belong.
    (enable_progress_bars if progress_enabled() else disable_progress_bars)()
    url = _hub_call(f"create the repository {repo_id}", lambda: api.create_repo(repo_id, private=private or None, exist_ok=True))
    repo_id = url.repo_id  # NAME alone lives in the token owner's namespace; every later call needs OWNER/NAME
    if private:
        info = _hub_call(f"read the repository {repo_id}", lambda: api.repo_info(repo_id))
        if info.private is False:
            raise SgmError(
                f"{repo_id} already exists and is public, but --private was asked", "make it private on the Hub, or push without --private"
            )
    if revision and revision != DEFAULT_BRANCH:
        _hub_call(f"create the branch {revision}", lambda: api.create_branch(repo_id, branch=revision, exist_ok=True))
    operations = [CommitOperationAdd(path_in_repo=file.path, path_or_fileobj=str(plan.folder / file.path)) for file in plan.files]
    return _hub_call(
        f"upload to {repo_id}",
        lambda: api.create_commit(
            repo_id,
            operations,
            commit_message=commit_message(plan),
            commit_description=f"Pushed by sgm-export {__version__}; `sgm_export.json` lists the SHA-256 of every file.",
            revision=revision,
        ),
    )


def push_folder(
    folder: Path, repo_id: str, private: bool = False, revision: str | None = None, say: Callable[[str], None] = print
) -> CommitInfo:
    """What `push` and `run` do: check the folder, say who pushes what where, push in one commit."""
    check_repo_id(repo_id)
    plan = plan_push(folder)
    api = HfApi()
    account = hub_account(api)
    if "/" not in repo_id:
        repo_id = f"{account['name']}/{repo_id}"
    say(
        f"pushing {plan.folder} ({len(plan.files)} files, {human_size(plan.total_size)}) to {api.endpoint}/{repo_id} "
        f"(branch {revision or DEFAULT_BRANCH}) as {describe_account(account)}"
    )
    note = snippet_note(plan, repo_id)
    if note:
        say(note)
    commit = push_plan(plan, repo_id, private, revision, api)
    say(f"pushed in one commit: {commit.commit_url}")
    return commit


def snippet_note(plan: PushPlan, repo_id: str) -> str | None:
    """A hint when the card's loading snippets name another repository (or none) than REPO_ID."""
    named = (read_manifest(plan.folder) or {}).get("hub_repo_id")
    if named == repo_id:
        return None
    return (
        f"note: the card's loading snippets name {named or PLACEHOLDER_ID!r}, not {repo_id!r}; "
        f"`sgm-export card {plan.folder} --repo-id {repo_id}` renders them for this repository before you push"
    )


def human_size(size: int) -> str:
    """Bytes in decimal units, as the Hub shows them: 512 B, 6.1 kB, 536.2 MB."""
    exponent = min(int(math.log10(size)) // 3, len(SIZE_UNITS) - 1) if size >= 1000 else 0
    return f"{size} B" if exponent == 0 else f"{size / 1000**exponent:.1f} {SIZE_UNITS[exponent]}"


def commit_message(plan: PushPlan) -> str:
    block = plan.card.data.to_dict().get(CARD_BLOCK, {})
    return f"Upload {block.get('format', 'sgm-export')} checkpoint with SGM safety glasses ({block.get('experts', '?')} experts)"


def _hub_call(what: str, call: Callable[[], T]) -> T:
    """Run one Hub request; any failure becomes a one-line error without the token in it."""
    try:
        return call()
    except SgmError:
        raise
    except Exception as error:
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise SgmError(f"could not {what}: {_scrubbed(reason)}", _fix_for(error)) from error


def _fix_for(error: Exception) -> str:
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status == 401:
        return "the token was refused: set a valid HF_TOKEN or run `hf auth login --force`"
    if status == 403:
        return "the token may not write there: use a token with write access, or a namespace you belong to"
    if type(error).__name__ == "OfflineModeIsEnabled":
        return "unset HF_HUB_OFFLINE to push"
    return "check your network and the repository id, then push again (what was uploaded is not sent twice)"


def _scrubbed(text: str) -> str:
    token = get_token()
    return text.replace(token, "<token>") if token else text
