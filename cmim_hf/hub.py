"""Sharing on the Hugging Face Hub: push a saved model folder, and resolve a model name to a folder.

    push_folder("runs/cmim-small/final", "org/cmim-moses-small")   # -> commit URL
    resolve_model("runs/cmim-small/final")   # a local folder
    resolve_model("cmim-moses-small")        # a checkpoint shipped in the package (cmim_hf.pretrained)
    resolve_model("org/cmim-moses-small")    # a Hub repo, through huggingface_hub's cache (works offline
                                             # with HF_HUB_OFFLINE=1 once it is cached)

A folder to push is what `cmim_hf.saving.save_model_folder` writes, with its card (`README.md`, see
`cmim_hf.cards`): it loads anywhere with `trust_remote_code=True`, without this package.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from .pretrained import PRETRAINED_ROOT, pretrained_path
from .saving import restore_folder

__all__ = [
    "REQUIRED_FILES",
    "HubOfflineError",
    "check_model_folder",
    "hub_offline",
    "is_repo_id",
    "push_folder",
    "resolve_model",
]

# What a pushed repo needs so that from_pretrained, AutoTokenizer and the pipeline work without cmim_hf.
# (weights: model.safetensors, or model.safetensors.index.json for a sharded save)
REQUIRED_FILES: dict[str, str] = {
    "config.json": "the model config (with auto_map and custom_pipelines)",
    "model.safetensors": "the weights",
    "configuration_cmim.py": "the config code (remote code)",
    "modeling_cmim.py": "the model code (remote code)",
    "pipeline_cmim.py": "the feature-extraction pipeline code",
    "tokenizer.json": "the tokenizer",
    "tokenizer_config.json": "the tokenizer settings",
    "README.md": "the model card (render it with cmim_hf.cards.write_model_card)",
}
# Files that never belong in a model repo (editor, cache and interpreter leftovers).
IGNORE_PATTERNS = ["*.pyc", "__pycache__/*", "*/__pycache__/*", ".*", "*/.*"]
# A Hub repo id: "name" or "namespace/name"; letters, digits, "-", "_", "." (no "--" or ".." inside).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
# Files from_pretrained / AutoTokenizer / pipeline read; snapshot_download fetches only these.
_MODEL_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.yaml", "*.txt", "*.model"]


def is_repo_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id ("name" or "namespace/name")."""
    return bool(_REPO_ID.match(name)) and "--" not in name and ".." not in name


# The HTTP library's base error (HfHubHTTPError's other parent): connection failures and timeouts derive from it.
_TRANSPORT_ERRORS = tuple(base for base in HfHubHTTPError.__bases__ if base is not OSError)


class HubOfflineError(OfflineModeIsEnabled):
    """Pushing was asked for while the Hub is switched off (HF_HUB_OFFLINE=1). Nothing was sent."""


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set, at import of huggingface_hub or since (in this process's environment)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def check_model_folder(folder: str | os.PathLike, *, require_card: bool = True) -> Path:
    """Check that `folder` holds a complete cMIM model for the Hub; return it as a resolved Path.

    Raises:
        FileNotFoundError: the folder does not exist, or files are missing (all of them named, each with
            what it is for).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist (or is not a folder)")
    missing = []
    for name, what in REQUIRED_FILES.items():
        if name == "README.md" and not require_card:
            continue
        present = (folder / name).is_file()
        if name == "model.safetensors":
            present = present or (folder / "model.safetensors.index.json").is_file()
        if not present:
            missing.append(f"{name} ({what})")
    if missing:
        raise FileNotFoundError(
            f"model folder {folder} is incomplete; missing: {'; '.join(missing)}. Save it with "
            "cmim_hf.saving.save_model_folder and add the card with cmim_hf.cards.write_model_card."
        )
    return folder.resolve()


def push_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
                create_pr: bool = False, token: str | None = None, commit_message: str | None = None) -> str:
    """Upload a saved model folder to the Hub repo `repo_id` (created if needed) in one commit.

    Args:
        folder: a folder written by `save_model_folder`, with its `README.md` card.
        repo_id: "namespace/name".
        private: create the repo private (an existing repo keeps its visibility).
        revision: branch to commit to (created from main if missing); default main.
        create_pr: open a pull request with the files instead of committing to the branch.
        token: Hub token; default the logged-in one (`hf auth login` / HF_TOKEN).
        commit_message: default "Upload cMIM model <folder name>".

    Returns:
        The URL of the commit (or of the pull request with `create_pr=True`).

    A card generated by `cmim_hf.cards` is first rewritten to name `repo_id` (title, `model-index`, usage code),
    and stays so once pushed; if the push fails the folder's card is put back as it was. A checkpoint shipped in
    the package is pushed from a copy: the package's own files are never changed.

    Raises:
        FileNotFoundError: the folder is missing files (named in the message).
        ValueError: a file is unreadable (not JSON, truncated or empty weights; named in the message), or
            `repo_id` is not a valid repo id.
        HubOfflineError: HF_HUB_OFFLINE is set; nothing was sent.
        PermissionError: the Hub refused the token (401/403); OSError: it refused otherwise.
        ConnectionError: the Hub did not answer; nothing was sent.
    """
    from .loading import check_model_files

    folder = check_model_folder(folder)
    check_model_files(folder)  # readable config, weights and tokenizer: a broken model is not worth sending
    if not isinstance(repo_id, str) or not is_repo_id(repo_id):
        raise ValueError(f"repo_id must look like 'namespace/name' (letters, digits, '-', '_', '.'), got {repo_id!r}")
    offline_message = (f"cannot push {folder} to {repo_id!r}: the Hub is switched off (HF_HUB_OFFLINE=1); "
                       "nothing was sent. Unset HF_HUB_OFFLINE to push.")
    if hub_offline():
        raise HubOfflineError(offline_message)
    with _folder_to_upload(folder, repo_id) as upload_path:
        api = HfApi(token=token)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            if revision is not None and revision != "main":
                api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=str(upload_path), repo_type="model", revision=revision,
                create_pr=create_pr, commit_message=commit_message or f"Upload cMIM model {folder.name}",
                ignore_patterns=IGNORE_PATTERNS,
            )
        except OfflineModeIsEnabled as error:  # the environment changed under us, or a sub-call checked first
            raise HubOfflineError(offline_message) from error
        except HfHubHTTPError as error:  # the Hub answered, and refused
            status = getattr(error.response, "status_code", None)
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            refused = PermissionError if status in (401, 403) else OSError
            raise refused(f"cannot push {folder} to {repo_id!r}: the Hub refused ({reason}). Check the repo id and "
                          "that the token (--token, HF_TOKEN or `hf auth login`) may write to it") from error
        except _TRANSPORT_ERRORS as error:  # no answer at all
            raise ConnectionError(f"cannot push {folder} to {repo_id!r}: the Hub is unreachable ({error}); nothing "
                                  "was sent. Check the network, or set HF_HUB_OFFLINE=1 to work offline") from error
    url = (commit.pr_url if create_pr else None) or commit.commit_url
    return str(url)


@contextlib.contextmanager
def _folder_to_upload(folder: Path, repo_id: str) -> Iterator[Path]:
    """The folder to upload, its generated card naming `repo_id`: `folder` itself (its card files restored if the
    push fails), or for a shipped checkpoint a temporary copy."""
    from .cards import CARD_DATA_FILE
    from .saving import atomic_write

    if folder.resolve().is_relative_to(PRETRAINED_ROOT):
        with tempfile.TemporaryDirectory(prefix="cmim-push-") as staging:
            copy = Path(shutil.copytree(folder, Path(staging) / folder.name,
                                        ignore=shutil.ignore_patterns(*IGNORE_PATTERNS)))
            _name_repo_in_card(copy, repo_id)
            yield copy
        return
    originals = {name: (folder / name).read_bytes() for name in ("README.md", CARD_DATA_FILE)
                 if (folder / name).is_file()}
    _name_repo_in_card(folder, repo_id)
    try:
        yield folder
    except BaseException:
        for name, content in originals.items():
            atomic_write(folder / name, content)
        raise


def _name_repo_in_card(folder: Path, repo_id: str) -> None:
    """A card generated by `cmim_hf.cards` (it has card_data.json) is rewritten to name the repo it goes to,
    so its usage code runs as written from the Hub."""
    from .cards import CARD_DATA_FILE, card_data_from_folder, write_model_card

    if (folder / CARD_DATA_FILE).is_file():
        card = card_data_from_folder(folder)
        if (card.model_id, card.location) != (repo_id, repo_id):
            write_model_card(folder, card, model_id=repo_id, location=repo_id)


def resolve_model(name_or_path: str | os.PathLike, *, revision: str | None = None, token: str | None = None) -> Path:
    """The local folder of a model given as a folder, a shipped checkpoint name or a Hub repo id.

    Tried in this order: an existing local folder; a bare name, looked up in `cmim_hf.pretrained`;
    "namespace/name", a Hub repo downloaded into (or, with HF_HUB_OFFLINE=1, found in) huggingface_hub's
    cache by `snapshot_download` (only the files loading needs: json, safetensors, py, md, yaml, txt).

    Raises:
        FileNotFoundError: a path that does not exist, a folder without config.json, an unknown checkpoint
            name (the message lists the available ones), a released checkpoint missing from this install,
            or a repo id that is neither cached (offline) nor reachable.
    """
    explicit_path = isinstance(name_or_path, os.PathLike)  # a Path object is never taken for a repo id
    if explicit_path:
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise TypeError(f"expected a folder, a checkpoint name or a Hub repo id (str), got {name_or_path!r}")
    path = Path(name_or_path).expanduser()
    if not path.exists() and (aside := restore_folder(path, clean=False)) is not None:
        warnings.warn(f"restored {path} from {aside.name}, where an interrupted save had moved it", stacklevel=2)
    if path.exists():
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is a file; expected a model folder, a checkpoint name or a repo id")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but holds no config.json: not a saved model")
        return path.resolve()
    repo_id = not explicit_path and is_repo_id(name_or_path)
    if repo_id and "/" not in name_or_path:  # a bare name: a shipped checkpoint or nothing
        try:
            return pretrained_path(name_or_path)
        except KeyError as error:
            raise FileNotFoundError(f"cannot find model {name_or_path!r}: no such local folder, and {error}. "
                                    "(A Hub repo id has the form 'namespace/name'.)") from None
    if not repo_id:
        raise FileNotFoundError(f"model folder {name_or_path!r} does not exist (and it is not a Hub repo id "
                                "'namespace/name' nor a shipped checkpoint name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, revision=revision, token=token, allow_patterns=_MODEL_PATTERNS))
    except Exception as error:  # OSError offline, HTTP/repo errors online: one clear message either way
        where = ("it is not in the local Hub cache and HF_HUB_OFFLINE=1 forbids downloading" if hub_offline()
                 else f"the Hub could not provide it ({type(error).__name__}: {error})")
        at = f" at revision {revision!r}" if revision else ""
        raise FileNotFoundError(f"cannot find model {name_or_path!r}: no such local folder, and as a Hub repo "
                                f"id{at} {where}") from error
