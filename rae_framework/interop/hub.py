"""An exported folder on the Hugging Face Hub: a repo id -> its local snapshot (``huggingface_hub.snapshot_download``).

Offline (``HF_HUB_OFFLINE=1``, read when called, or ``local_files_only=True``) only the local Hugging Face
cache is read; a repo that is not there is a :class:`ConfigError` naming it and the command that downloads it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rae_framework.errors import ConfigError, RAEError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")  # owner/name
TRUE_WORDS = {"1", "on", "yes", "true"}


def is_hub_candidate(path_or_repo_id: str | Path) -> bool:
    """Whether ``path_or_repo_id`` names no local path and reads as a Hub repo id (``owner/name``)."""
    text = str(path_or_repo_id)
    return not Path(text).expanduser().exists() and bool(REPO_ID.match(text))


def offline_by_default() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it, but at call time (its constant is read at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS


def snapshot(repo_id: str, local_files_only: bool | None = None) -> Path:
    """The local folder of ``repo_id``'s snapshot (downloaded unless offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    offline = offline_by_default() if local_files_only is None else local_files_only
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline))
    except LocalEntryNotFoundError:
        raise ConfigError(f"{repo_id!r}: no such run directory or exported folder, and no snapshot of the Hub repo "
                          f"{repo_id} in the local Hugging Face cache ({_cache_dir()}) while offline; download it "
                          f"with 'huggingface-cli download {repo_id}' (or unset HF_HUB_OFFLINE)") from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise ConfigError(f"{repo_id!r}: no such run directory or exported folder, and the Hub has no repo "
                          f"{repo_id} ({type(error).__name__}; a private repo needs 'huggingface-cli login')") from None
    except OSError as error:  # network failures: requests/httpx errors derive from OSError
        raise RAEError(f"{repo_id}: downloading the Hub snapshot failed: {error}") from None


def _cache_dir() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
