"""The tokenizer protocol and tokenizer folders.

Every tokenizer (image VQ-VAE, vector MLP, text) offers the same four names::

    ids = tok.encode(values)     # natural units in (rgb 0..1 or uint8, depth in metres, class ids, vectors)
    values = tok.decode(ids)     # (B, num_tokens) ids in [0, vocab_size) -> natural units out
    tok.vocab_size, tok.num_tokens

and is a folder ``config.json`` (``_class_name`` + its config fields) + ``model.safetensors`` (+ ``README.md``),
loadable alone with ``Class.from_pretrained(folder)`` or, whatever the class, ``load_tokenizer(folder)``.
Loading never unpickles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors.torch import save_file

from .. import config as config_lib
from .. import hub
from ..nn.loading import assign_state, check_dtype, parameters_on_meta, read_safetensors, target_dtypes
from ..nn.state_check import missing_unexpected, wrong_kind

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
# What a tokenizer repo download fetches (`hub.resolve`): configs, weights and tokenizer JSON, never pickles.
HUB_FILES = ("*.json", "*.safetensors", "*.md")

# _class_name in config.json -> the tokenizer class, as "module:attribute" (imported when a folder names it, so
# that loading one kind of tokenizer does not import the others) or the class itself (`register_tokenizer`).
# One explicit table: no class registers itself on import. Released 4M folders (no _class_name) are told apart
# by their arguments (`ml4m.folder.is_official_folder`) and load as their family.
TOKENIZER_CLASSES: dict[str, str | type] = {
    "ViTVQVAE": "polymodal.tokenizers.vqvae:ViTVQVAE",
    "MLPTokenizer": "polymodal.tokenizers.mlp:MLPTokenizer",
    "TextTokenizer": "polymodal.tokenizers.text:TextTokenizer",
}


class TokenizerInputError(ValueError):
    """Values or ids a tokenizer cannot take: wrong shape, channels, size, dtype, NaN, ids outside the codebook."""


class TokenizerLoadError(ValueError):
    """A tokenizer folder or file that cannot be loaded: a truncated or corrupt file, JSON that does not parse,
    weights that do not fit the config. The message is one line and names the file."""


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    num_tokens: int

    def encode(self, values: Any) -> torch.Tensor: ...

    def decode(self, ids: torch.Tensor) -> Any: ...


def register_tokenizer(cls: type) -> type:
    """Make ``load_tokenizer`` know a user's own tokenizer class by its name (an explicit call; the built-in
    classes are in `TOKENIZER_CLASSES`). The class needs ``from_pretrained(folder)``."""
    TOKENIZER_CLASSES[cls.__name__] = cls
    return cls


def tokenizer_class(name: str, where: Path | str = "") -> type:
    """The class a config.json's ``_class_name`` names; a ValueError listing the known ones otherwise."""
    if name not in TOKENIZER_CLASSES:
        raise ValueError(f"{where}: unknown tokenizer class {name!r}; known: {', '.join(sorted(TOKENIZER_CLASSES))}")
    cls = TOKENIZER_CLASSES[name]
    return config_lib.import_path(cls) if isinstance(cls, str) else cls


# ---------------------------------------------------------------------------------------------- folders


def save_folder(module: torch.nn.Module, cfg: Any, path: str | Path, *, readme: str = "") -> Path:
    """Write ``config.json`` (class name + config) and ``model.safetensors`` (the state dict) to ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = {"_class_name": type(module).__name__, **config_lib.to_dict(cfg)}
    (path / CONFIG).write_text(json.dumps(data, indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(path / WEIGHTS))
    if readme:
        (path / "README.md").write_text(readme)
    return path


def read_config(path: str | Path) -> dict:
    """The ``config.json`` of a tokenizer folder, with clear errors for a folder that is not one."""
    path = Path(path).expanduser()
    if not (path / CONFIG).is_file():
        raise FileNotFoundError(f"{path} is not a tokenizer folder: no {CONFIG}")
    try:
        data = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TokenizerLoadError(f"{path / CONFIG}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or "_class_name" not in data:
        raise TokenizerLoadError(f"{path / CONFIG} has no _class_name: not a polymodal tokenizer folder")
    return data


def load_folder(cls: type, config_cls: type, path: str | Path, *, map_location: str = "cpu",
                dtype: torch.dtype | None = None):
    """Build ``cls(config)`` from a folder (or a Hub repo id) and load its weights strictly; returns it in eval mode.

    ``dtype`` (e.g. torch.bfloat16): the floating weights are read straight into it, with no float32 copy of the
    model on the way (built with its parameters on meta, `polymodal.nn.loading`); default the module's own."""
    check_dtype(dtype)
    path = hub.resolve(path, allow_patterns=HUB_FILES)
    data = read_config(path)
    if data["_class_name"] != cls.__name__:
        raise ValueError(f"{path} holds a {data['_class_name']}, not a {cls.__name__} (use load_tokenizer)")
    cfg = config_lib.from_dict(config_cls, {k: v for k, v in data.items() if not k.startswith("_")},
                               source=str(path / CONFIG))
    if not (path / WEIGHTS).is_file():
        raise FileNotFoundError(f"{path}: no {WEIGHTS}{hub.partial_snapshot_hint(path)}")
    with parameters_on_meta():
        model = cls(cfg)
    state = read_weights(path, model, map_location=map_location, dtype=dtype)
    return assign_state(model, state, dtype=dtype).to(map_location).eval()


def read_weights(path: Path, model: torch.nn.Module, *, map_location: str = "cpu",
                 dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tensors of ``path/model.safetensors`` in ``model``'s dtypes (floating ones in ``dtype`` when given),
    each cast as it is read, checked against ``model`` by `checked_state`; every problem is a `TokenizerLoadError`."""
    file = path / WEIGHTS
    try:
        sd = read_safetensors(file, target_dtypes(model, dtype), device=map_location)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type (and OSError) for a damaged file
        raise TokenizerLoadError(f"tokenizer folder {path}: {WEIGHTS} is truncated or corrupt ({e})") from e
    return checked_state(model, sd, path)


def checked_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """``state`` if its names and shapes are ``model``'s, so that `load_state_dict` cannot fail with a multi-line
    RuntimeError; else a one-line `TokenizerLoadError` naming ``path/model.safetensors``, its config and the tensor.
    The one check of every tokenizer folder: polymodal's (`read_weights`) and the released ones (`ml4m.folder`)."""
    file, expected = path / WEIGHTS, model.state_dict()
    for key, t in state.items():
        if key in expected and tuple(t.shape) != tuple(expected[key].shape):
            raise TokenizerLoadError(f"{file}: tensor {key} has shape {tuple(t.shape)} in the file, the config "
                                     f"({path / CONFIG}) expects {tuple(expected[key].shape)}")
    if why := wrong_kind(state, expected, f"the config ({path / CONFIG})"):
        raise TokenizerLoadError(f"{file}: {why}")
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise names_differ(path, missing, unexpected)
    return state


def names_differ(path: Path, missing: list[str], unexpected: list[str]) -> TokenizerLoadError:
    """The one-line error of a tokenizer folder whose weights lack tensors of its config (``missing``) or hold
    others (``unexpected``); `checked_state`'s, and the DiVAE UNet's in the file's own names."""
    return TokenizerLoadError(f"{path / WEIGHTS}: the tensors do not match the config ({path / CONFIG}): "
                              f"{missing_unexpected(missing, unexpected)}")


def load_tokenizer(path: str | Path, *, dtype: torch.dtype | None = None):
    """Any tokenizer folder, whatever its class (dispatch on ``_class_name`` in its config.json).

    Also a bare HF ``tokenizers`` JSON file, such as 4M's official ``text_tokenizer_4m_wordpiece_30k.json``, or a
    folder holding only such a JSON (no config.json): a `TextTokenizer` with the file's ids. Anything else raises
    FileNotFoundError (nothing there) or ValueError (something there that is not a tokenizer), saying what it found.
    A released 4M tokenizer folder (the reference's arguments, no ``_class_name``) loads as its family
    (`ml4m.folder.load_official_tokenizer`). A Hub repo id (``owner/name[@revision]``) loads its snapshot from
    the Hub cache (`polymodal.hub.resolve`). ``dtype`` (e.g. torch.bfloat16): a tokenizer with weights loads
    straight into it, with no float32 copy on the way (`polymodal.nn.loading`); a text tokenizer has none.
    """
    check_dtype(dtype)
    path = hub.resolve(path, allow_patterns=HUB_FILES, what="file or folder")
    if path.is_file() and path.name == CONFIG:
        path = path.parent
    from .ml4m.folder import is_official_folder, load_official_tokenizer  # here: that module imports this one

    if is_official_folder(path):  # a released 4M tokenizer: the reference's arguments, no _class_name
        return load_official_tokenizer(path, dtype=dtype)
    if _bare_text_tokenizer(path):
        from .text import TextTokenizer

        return TextTokenizer.from_pretrained(path)
    cls = tokenizer_class(read_config(path)["_class_name"], path)
    # A user's own class (register_tokenizer) need not take dtype: it is passed only when asked for.
    return cls.from_pretrained(path) if dtype is None else cls.from_pretrained(path, dtype=dtype)


def _bare_text_tokenizer(path: Path) -> bool:
    """Whether ``path`` is a JSON file or a folder without config.json but with JSON files (a text tokenizer to
    try); raises for a file that is not JSON and for a folder with neither."""
    if path.is_file():
        if path.suffix != ".json":
            raise ValueError(f"{path} is not a tokenizer: expected a tokenizer folder (config.json + weights) or a "
                             f"HF tokenizers JSON file, got a {path.suffix or 'suffix-less'} file")
        return True
    if path.is_dir() and not (path / CONFIG).is_file():
        if not any(path.glob("*.json")):
            raise FileNotFoundError(f"{path} is not a tokenizer folder: no {CONFIG} and no tokenizer JSON file")
        return True
    if not path.exists():
        raise FileNotFoundError(f"tokenizer {path}: no such file or folder")
    return False


# --------------------------------------------------------------------------------------------- checks


def check_finite(x: torch.Tensor, what: str) -> None:
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        n = int((~torch.isfinite(x)).sum())
        raise TokenizerInputError(f"{what} holds {n} NaN or infinite value(s) out of {x.numel()}")


def check_token_ids(ids: torch.Tensor, vocab_size: int, num_tokens: int, what: str) -> torch.Tensor:
    """(B, num_tokens) integer ids in [0, vocab_size), else a TokenizerInputError saying what is wrong."""
    if not isinstance(ids, torch.Tensor):
        ids = torch.as_tensor(ids)
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TokenizerInputError(f"{what}: ids must be integers, got {ids.dtype}")
    if ids.ndim != 2 or ids.shape[1] != num_tokens:
        raise TokenizerInputError(f"{what}: expected ids of shape (B, {num_tokens}), got {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise TokenizerInputError(f"{what}: ids outside the codebook (from {int(ids.min())} to {int(ids.max())}); "
                                  f"valid ids are 0 to {vocab_size - 1}")
    return ids.long()
