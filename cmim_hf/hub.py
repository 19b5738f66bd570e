"""Finding models on the Hugging Face Hub: resolve a model name to a local folder, and the Hub's settings.

    resolve_model("runs/cmim-small/final")   # a local folder
    resolve_model("cmim-moses-small")        # a checkpoint shipped in the package (cmim_hf.pretrained)
    resolve_model("org/cmim-moses-small")    # a Hub repo, through huggingface_hub's cache (works offline
                                             # with HF_HUB_OFFLINE=1 once it is cached)

Pushing a saved folder to the Hub is `cmim_hf.publishing.push_folder`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import huggingface_hub

from .pretrained import pretrained_path
from .saving import restore_folder

__all__ = ["hub_offline", "is_repo_id", "resolve_model"]

# A Hub repo id: "name" or "namespace/name"; letters, digits, "-", "_", "." (no "--" or ".." inside).
_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")
# Files from_pretrained / AutoTokenizer / pipeline read; snapshot_download fetches only these.
_MODEL_PATTERNS = ["*.json", "*.safetensors", "*.py", "*.md", "*.yaml", "*.txt", "*.model"]


def is_repo_id(name: str) -> bool:
    """Whether `name` has the form of a Hub repo id ("name" or "namespace/name")."""
    return bool(_REPO_ID.match(name)) and "--" not in name and ".." not in name


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE is set, at import of huggingface_hub or since (in this process's environment)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


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
            hint = " (it is an ONNX export: use it with --backend onnx, or backend='onnx')" \
                if (path / "cmim_onnx.json").is_file() else ""  # onnx_export.ONNX_CONFIG_NAME (it imports this module)
            raise FileNotFoundError(f"{path} is a folder but holds no config.json: not a saved model{hint}")
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
