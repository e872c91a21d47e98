"""Names that stand for folders: a local path, or a Hugging Face Hub repo id fetched through ``huggingface_hub``.

Every ``from_pretrained`` (`FourM`, tokenizers, `Pipeline`) first turns what it was given into a local folder
with `resolve`::

    resolve("runs/small/release")              # an existing file or folder: returned as it is
    resolve("EPFL-VILAB/4M-21_B")              # a repo id: its snapshot in the Hub cache, downloaded if needed
    resolve("EPFL-VILAB/4M-21_B@v1.0")         # at a branch, tag or commit (also ``revision="v1.0"``)

The Hub side is ``huggingface_hub.snapshot_download``: its cache (``HF_HUB_CACHE``, or ``HF_HOME``/hub, default
``~/.cache/huggingface/hub``), shared with every other library of the field, so a model fetched once with
``hf download ID`` loads here offline. ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) forbids any network
access: a repo in the cache resolves, one that is not gives a one-line error saying how to get it. Both variables
are read when `resolve` runs, not when the library was imported, so a process (or a test) may set them late.

`RELEASED_TOKENIZERS` is the release's table of which tokenizer repo serves which 4M domain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

# owner/name[@revision]: Hub names are letters, digits, '-', '_' and '.'; a revision may hold '/' (refs/pr/1).
_REPO_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_])(?:@(?P<rev>[^@\s]+))?")


class HubError(FileNotFoundError):
    """A name that gives no local folder: neither an existing path nor a repo the cache or the Hub can provide."""


def split_repo_id(name: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision or None)`` if ``name`` has the form ``owner/name[@revision]``, else None."""
    m = _REPO_ID.fullmatch(name)
    if m is None or ".." in m["repo"] or "--" in m["repo"]:
        return None
    return m["repo"], m["rev"]


def offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set now, or was when huggingface_hub loaded."""
    now = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").strip().lower()
    if now in ("1", "on", "yes", "true"):
        return True
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cache_dir() -> Path:
    """The Hub cache folder `resolve` reads and fills: ``HF_HUB_CACHE``, else ``HF_HOME``/hub, else the default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


def resolve(path_or_id: str | Path, *, revision: str | None = None, allow_patterns: Sequence[str] | None = None,
            what: str = "folder") -> Path:
    """A local path for ``path_or_id``: an existing file or folder as it is, a repo id as its Hub snapshot folder.

    ``allow_patterns`` (globs such as ``"*.json"``) limits what a download fetches; ``what`` names the local thing
    that was looked for in the error (``"folder"``, ``"file or folder"``). Raises `HubError` (one line) for a name
    that is neither, a repo missing from the cache while offline, or a repo the Hub does not give.
    """
    path = Path(path_or_id).expanduser()
    if path.exists():
        if revision is not None:
            raise ValueError(f"{str(path_or_id)!r} is a local {what}; revision={revision!r} applies to Hub repo ids")
        return path
    name = str(path_or_id)
    parsed = split_repo_id(name)
    if parsed is None:
        raise HubError(f"{name!r}: no such {what}, and not a Hub repo id (owner/name or owner/name@revision)")
    repo, rev = parsed
    if rev is not None and revision is not None and rev != revision:
        raise ValueError(f"{name!r}: revision {rev!r} in the name and revision={revision!r} differ")
    return _snapshot(repo, rev or revision, allow_patterns, what)


def _snapshot(repo: str, revision: str | None, allow_patterns: Sequence[str] | None, what: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local_only, cache = offline(), cache_dir()
    at = f"{repo}@{revision}" if revision else repo
    get = f"hf download {repo}" + (f" --revision {revision}" if revision else "")
    try:
        folder = snapshot_download(repo, revision=revision, cache_dir=str(cache), local_files_only=local_only,
                                   allow_patterns=list(allow_patterns) if allow_patterns else None)
    except RevisionNotFoundError:
        raise HubError(f"{at}: the Hub has repo {repo} but no revision {revision!r}") from None
    except GatedRepoError:
        raise HubError(f"{at}: the repo is gated; accept its terms on huggingface.co and log in (hf auth login) "
                       "before fetching it") from None
    except RepositoryNotFoundError:
        raise HubError(f"{at}: no such local {what}, and the Hub has no repo {repo} (or it is private: log in "
                       "with hf auth login)") from None
    except LocalEntryNotFoundError as e:
        if type(e).__name__ == "IncompleteSnapshotError":  # huggingface_hub >= 1.x checks cached snapshots
            raise HubError(f"{at}: its snapshot in the Hub cache ({cache}) is incomplete and the Hub cannot be "
                           f"reached; complete it with `{get}` on a machine with network access") from None
        if local_only:
            raise HubError(f"{at}: no such local {what}, and not in the Hub cache ({cache}) while HF_HUB_OFFLINE is "
                           f"set; fetch it once with `{get}` on a machine with network access, or unset "
                           "HF_HUB_OFFLINE") from None
        raise HubError(f"{at}: could not reach the Hub to fetch repo {repo}, and it is not in the Hub cache "
                       f"({cache}): {_first_line(e.__cause__ or e)}") from None
    except ValueError as e:  # huggingface_hub's own check of the id (length, characters)
        raise HubError(f"{at}: not a valid Hub repo id ({_first_line(e)})") from None
    except OSError as e:  # an HTTP error, a download cut off, a cache on a full or read-only disk
        raise HubError(f"{at}: fetching repo {repo} into {cache} failed: {_first_line(e)}") from None
    return Path(folder)


def partial_snapshot_hint(folder: str | Path) -> str:
    """For an error about a file missing from ``folder``: when it is a Hub cache snapshot
    (``.../models--OWNER--NAME/snapshots/<commit>``), a clause naming its repo and the command that completes it
    (a download cut off before a large file was complete leaves the snapshot without it); else ""."""
    folder = Path(folder)
    storage = folder.parent.parent.name
    if folder.parent.name != "snapshots" or not storage.startswith("models--"):
        return ""
    repo = storage[len("models--"):].replace("--", "/", 1)  # repo ids hold no "--" (`split_repo_id`)
    return (f"; it is the Hub cache's snapshot of {repo} at {folder.name}, only partly downloaded: complete it "
            f"with `hf download {repo} --revision {folder.name}`")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


# ------------------------------------------------------------------------------------------- the release

# The released 4M transformers (apple/ml-4m README): config.json + model.safetensors each, the official layout.
RELEASED_MODELS = (
    "EPFL-VILAB/4M-7_B_CC12M", "EPFL-VILAB/4M-7_B_COYO700M", "EPFL-VILAB/4M-21_B",
    "EPFL-VILAB/4M-7_L_CC12M", "EPFL-VILAB/4M-7_L_COYO700M", "EPFL-VILAB/4M-21_L",
    "EPFL-VILAB/4M-7_XL_CC12M", "EPFL-VILAB/4M-7_XL_COYO700M", "EPFL-VILAB/4M-21_XL",
    "EPFL-VILAB/4M-7-T2I_B_CC12M", "EPFL-VILAB/4M-7-T2I_L_CC12M", "EPFL-VILAB/4M-7-T2I_XL_CC12M",
    "EPFL-VILAB/4M-7-SR_L_CC12M",
)

_TOK = "EPFL-VILAB/4M_tokenizers_"
# Domain -> the tokenizer repo that made its tokens, for every released 4M-7 / 4M-21 model (4M-7's domains are a
# subset; 4M-7-SR's @448 domains use the same 224-448 tokenizers), as the reference's README, generation notebooks
# and Demo4MSampler load them. Names are f"4M_tokenizers_{modality}_{vocab}_{min_res}-{max_res}" (globals:
# _{vocab}_{tokens}_{res}; SAM instances and poses: _{vocab}_{size}). Canny and SAM edges share one tokenizer.
# Not here: rgb@224 (pixels), caption/det/metadata/color_palette (the WordPiece text tokenizer, a file in the
# reference's repository: TEXT_TOKENIZER_FILE), t5_caption (T5-XXL embeddings, input only).
RELEASED_TOKENIZERS: dict[str, str] = {
    **{f"tok_rgb@{r}": _TOK + "rgb_16k_224-448" for r in (224, 448)},
    **{f"tok_depth@{r}": _TOK + "depth_8k_224-448" for r in (224, 448)},
    **{f"tok_normal@{r}": _TOK + "normal_8k_224-448" for r in (224, 448)},
    **{f"tok_semseg@{r}": _TOK + "semseg_4k_224-448" for r in (224, 448)},
    **{f"tok_clip@{r}": _TOK + "CLIP-B16_8k_224-448" for r in (224, 448)},
    "tok_canny_edge@224": _TOK + "edge_8k_224-512",
    "tok_sam_edge@224": _TOK + "edge_8k_224-512",
    "tok_dinov2@224": _TOK + "DINOv2-B14_8k_224-448",
    "tok_imagebind@224": _TOK + "ImageBind-H14_8k_224-448",
    "tok_dinov2_global": _TOK + "DINOv2-B14-global_8k_16_224",
    "tok_imagebind_global": _TOK + "ImageBind-H14-global_8k_16_224",
    "sam_instance": _TOK + "sam-instance_1k_64",
    "human_poses": _TOK + "human-poses_1k_8",
}

# 4M's WordPiece vocabulary (caption, det, metadata, ...): fourm/utils/tokenizer/trained/ in apple/ml-4m.
TEXT_TOKENIZER_FILE = "text_tokenizer_4m_wordpiece_30k.json"
