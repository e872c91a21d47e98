"""Hub repo ids (`polymodal.hub.resolve`) through a Hugging Face cache built here from the fixtures, offline.

Every test runs with the network cut (socket connect and DNS raise), so a pass proves that nothing was fetched.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants as hf_constants  # read the environment now, before any test sets HF_HUB_*
from safetensors.torch import load_file

from polymodal import hub
from polymodal.cli import main
from polymodal.hub import RELEASED_TOKENIZERS, HubError, resolve, split_repo_id
from polymodal.interop.ml4m import forward_logits, load_checkpoint, save_checkpoint
from polymodal.modalities import FOURM7_INPUTS, FOURM21_INPUTS, Kind, get
from polymodal.model import FourM
from polymodal.pipeline import Pipeline
from polymodal.tokenizers import load_tokenizer
from polymodal.tokenizers.mlp import MLPTokenizer, MLPTokenizerConfig
from polymodal.tokenizers.text import TextTokenizer

from .conftest import fixtures_dir

REPO = "EPFL-VILAB/4M-21_B"
TEXT_REPO = "someone/4M-text-tokenizer"
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40
TEXT_FILE = "text_tokenizer_4m_wordpiece_30k.json"


def cache_repo(cache: Path, repo_id: str, files: dict[str, Path], *, commit: str, refs=("main",)) -> Path:
    """Lay out one snapshot as huggingface_hub's cache does: ``models--OWNER--NAME/blobs/<sha256>``, the snapshot's
    files as relative links to them under ``snapshots/<commit>/``, and each ref a file holding the bare commit."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    for name, src in files.items():
        data = Path(src).read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / ref).write_text(commit)  # no newline: the library reads the file as the hash
    return snapshot


def folder_files(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_network(monkeypatch):
    """Cut the network: any connect or DNS look-up raises (and is counted)."""
    tries = []

    def refuse(*args, **kwargs):
        tries.append(args)
        raise OSError("the test cut the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return tries


@pytest.fixture
def cache(tmp_path, monkeypatch, no_network):
    """An empty Hub cache folder, offline (set after huggingface_hub was imported: `resolve` reads them late)."""
    path = tmp_path / "hub"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return path


@pytest.fixture(scope="module")
def case():
    return load_file(str(fixtures_dir("ml4m-4m21-tiny", "case.safetensors")))


def logits(model: FourM, case) -> dict[str, torch.Tensor]:
    domains = sorted({k.split(".")[0] for k in case if not k.startswith(("logits.", "valid.", "target_ids."))})
    mod_dict = {d: {"tensor": case[f"{d}.tensor"], "input_mask": case[f"{d}.input_mask"],
                    "target_mask": case[f"{d}.target_mask"]} for d in domains}
    with torch.no_grad():
        return {name: out for name, (out, _) in forward_logits(model.eval(), mod_dict).items()}


# ----------------------------------------------------------------------------------------------- names


def test_what_counts_as_a_repo_id():
    assert split_repo_id("EPFL-VILAB/4M-21_B") == ("EPFL-VILAB/4M-21_B", None)
    assert split_repo_id("EPFL-VILAB/4M-21_B@refs/pr/1") == ("EPFL-VILAB/4M-21_B", "refs/pr/1")
    for not_an_id in ("/abs/path", "./a/b", "a/b/c", "model.json", "a/../b", "~/x", "a/b.", "owner/", "a--b/c"):
        assert split_repo_id(not_an_id) is None, not_an_id


def test_a_name_that_is_neither_folder_nor_repo_id(cache, tmp_path):
    with pytest.raises(HubError) as e:
        FourM.from_pretrained(tmp_path / "nothing")
    assert str(e.value) == (f"{str(tmp_path / 'nothing')!r}: no such folder or file, and not a Hub repo id "
                            "(owner/name or owner/name@revision)")
    with pytest.raises(HubError, match=r"^'a/b/c': no such file or folder, and not a Hub repo id"):
        load_tokenizer("a/b/c")


# ------------------------------------------------------------------------------------------- the model


def test_a_repo_id_loads_the_cached_snapshot_like_the_folder(cache, case, no_network):
    folder = fixtures_dir("ml4m-4m21-tiny")
    snapshot = cache_repo(cache, REPO, folder_files(folder), commit=COMMIT_A)
    assert resolve(REPO) == snapshot
    expected = logits(load_checkpoint(folder), case)
    for model in (FourM.from_pretrained(REPO), load_checkpoint(REPO), FourM.from_pretrained(str(folder))):
        got = logits(model, case)
        assert got.keys() == expected.keys()
        assert all(torch.equal(got[k], expected[k]) for k in expected)
    # And they are the reference's logits, not merely equal to each other.
    valid = case["valid.tok_rgb@224"]
    assert (expected["tok_rgb@224"][valid] - case["logits.tok_rgb@224"][valid]).abs().max() < 5e-5
    assert not no_network


def test_a_revision_resolves_to_its_own_snapshot(cache, tmp_path):
    folder = fixtures_dir("ml4m-4m21-tiny")
    cache_repo(cache, REPO, folder_files(folder), commit=COMMIT_A)
    other = load_checkpoint(folder)
    with torch.no_grad():
        other.encoder_norm.weight.mul_(2.0)
    save_checkpoint(other, tmp_path / "v2")
    cache_repo(cache, REPO, folder_files(tmp_path / "v2"), commit=COMMIT_B, refs=("v2",))

    def norm(model: FourM) -> torch.Tensor:
        return model.encoder_norm.weight

    main_norm = norm(load_checkpoint(folder))
    assert torch.equal(norm(FourM.from_pretrained(REPO)), main_norm)
    for model in (FourM.from_pretrained(REPO + "@v2"), FourM.from_pretrained(REPO, revision="v2"),
                  FourM.from_pretrained(REPO, revision=COMMIT_B), Pipeline.from_pretrained(REPO + "@v2").model):
        assert torch.equal(norm(model), 2 * main_norm)
    with pytest.raises(ValueError, match="revision 'v2' in the name and revision='main' differ"):
        resolve(REPO + "@v2", revision="main")
    with pytest.raises(ValueError, match="is a local folder; revision='v2' applies to Hub repo ids"):
        resolve(folder, revision="v2")


def test_a_repo_missing_while_offline_says_how_to_get_it(cache, tmp_path, capsys, no_network):
    with pytest.raises(HubError) as e:
        FourM.from_pretrained("EPFL-VILAB/4M-21_XL")
    assert str(e.value) == (
        f"EPFL-VILAB/4M-21_XL: no such local folder or file, and not in the Hub cache ({cache}) while "
        "HF_HUB_OFFLINE is set; fetch it once with `hf download EPFL-VILAB/4M-21_XL` on a machine with network "
        "access, or unset HF_HUB_OFFLINE")
    cache_repo(cache, REPO, folder_files(fixtures_dir("ml4m-4m21-tiny")), commit=COMMIT_A)
    with pytest.raises(HubError, match=r"`hf download EPFL-VILAB/4M-21_B --revision v9` on a machine"):
        resolve(REPO + "@v9")
    # The command line: one line, exit code 2, nothing written.
    out = tmp_path / "out"
    assert main(["generate", "--model", "EPFL-VILAB/4M-21_XL", "--to", "caption", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("polymodal generate: EPFL-VILAB/4M-21_XL: no such local folder") and err.count("\n") == 1
    assert "hf download EPFL-VILAB/4M-21_XL" in err and not out.exists()
    assert not no_network


def test_online_without_a_network_names_the_repo_and_uses_the_cache(cache, monkeypatch, no_network):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # in case the whole test run is offline
    with pytest.raises(HubError, match=r"^EPFL-VILAB/4M-21_XL: could not reach the Hub to fetch repo "
                                       r"EPFL-VILAB/4M-21_XL, and it is not in the Hub cache") as e:
        resolve("EPFL-VILAB/4M-21_XL")
    assert "\n" not in str(e.value)
    assert no_network, "the Hub was not even tried"
    # A repo already in the cache still loads when the Hub cannot be reached.
    snapshot = cache_repo(cache, REPO, folder_files(fixtures_dir("ml4m-4m21-tiny")), commit=COMMIT_A)
    assert resolve(REPO) == snapshot


# -------------------------------------------------------------------------------- tokenizers and pipelines


def test_tokenizers_by_repo_id(cache, tmp_path):
    text_file = fixtures_dir("ml4m-text-tokenizer", TEXT_FILE)
    (tmp_path / "extra.json").write_text("{}")  # a repo may hold other JSON beside 4M's file
    cache_repo(cache, TEXT_REPO, {TEXT_FILE: text_file, "extra.json": tmp_path / "extra.json"}, commit=COMMIT_A)
    texts = ["a wine glass on a table", "v0=12 v1=40 person"]
    ids = TextTokenizer.from_pretrained(text_file).encode_lists(texts)
    assert TextTokenizer.from_pretrained(TEXT_REPO).encode_lists(texts) == ids
    assert load_tokenizer(TEXT_REPO).encode_lists(texts) == ids

    mlp = MLPTokenizer(MLPTokenizerConfig(12, num_tokens=4, codebook_size=16, code_dim=4, hidden=16)).eval()
    mlp.save_pretrained(tmp_path / "mlp")
    cache_repo(cache, "someone/mlp", folder_files(tmp_path / "mlp"), commit=COMMIT_A)
    x = torch.randn(3, 12, generator=torch.Generator().manual_seed(0))
    for loaded in (load_tokenizer("someone/mlp"), MLPTokenizer.from_pretrained("someone/mlp")):
        assert torch.equal(loaded.encode(x), mlp.encode(x))


def test_a_pipeline_by_repo_ids(cache, case, tmp_path):
    folder = fixtures_dir("ml4m-4m21-tiny")
    cache_repo(cache, REPO, folder_files(folder), commit=COMMIT_A)
    cache_repo(cache, TEXT_REPO, {TEXT_FILE: fixtures_dir("ml4m-text-tokenizer", TEXT_FILE)}, commit=COMMIT_A)
    pipe = Pipeline.from_pretrained(REPO, text_tokenizer=TEXT_REPO)
    expected = logits(load_checkpoint(folder), case)
    assert all(torch.equal(v, expected[k]) for k, v in logits(pipe.model, case).items())
    assert isinstance(pipe.tokenizers["text"], TextTokenizer)
    # A bundle made of them, on the Hub: the same model and tokenizer again.
    pipe.save(tmp_path / "bundle")
    cache_repo(cache, "someone/bundle", folder_files(tmp_path / "bundle"), commit=COMMIT_B)
    again = Pipeline.from_pretrained("someone/bundle")
    assert all(torch.equal(v, expected[k]) for k, v in logits(again.model, case).items())
    assert again.tokenizers["text"].encode_lists(["a cat"]) == pipe.tokenizers["text"].encode_lists(["a cat"])


# ----------------------------------------------------------------------------------------- the release


# The tokenizer repos of the reference's README table (apple/ml-4m, "Tokenizers"), written out here by hand.
REFERENCE_TOKENIZER_REPOS = {
    "rgb_16k_224-448", "depth_8k_224-448", "normal_8k_224-448", "edge_8k_224-512", "semseg_4k_224-448",
    "CLIP-B16_8k_224-448", "DINOv2-B14_8k_224-448", "DINOv2-B14-global_8k_16_224", "ImageBind-H14_8k_224-448",
    "ImageBind-H14-global_8k_16_224", "sam-instance_1k_64", "human-poses_1k_8",
}


def test_released_tokenizers_cover_every_tokenized_domain():
    tokenized = [d for d in FOURM21_INPUTS + FOURM7_INPUTS if get(d).kind is Kind.IMAGE_TOKENS]
    tokenized += ["sam_instance", "human_poses"]
    assert not set(tokenized) - set(RELEASED_TOKENIZERS), "a tokenized 4M domain without its tokenizer repo"
    assert {r.removeprefix("EPFL-VILAB/4M_tokenizers_") for r in RELEASED_TOKENIZERS.values()} == \
        REFERENCE_TOKENIZER_REPOS
    assert RELEASED_TOKENIZERS["tok_canny_edge@224"] == RELEASED_TOKENIZERS["tok_sam_edge@224"]
    assert RELEASED_TOKENIZERS["tok_semseg@448"] == RELEASED_TOKENIZERS["tok_semseg@224"]  # 4M-7-SR, 224-448


def test_a_released_tokenizer_id_resolves_to_its_folder(cache):
    folder = fixtures_dir("ml4m-tokenizers", "semseg")
    repo = RELEASED_TOKENIZERS["tok_semseg@224"]
    cache_repo(cache, repo, folder_files(folder), commit=COMMIT_A)
    got = resolve(repo, allow_patterns=["*.json", "*.safetensors"])
    assert sorted(p.name for p in got.iterdir()) == sorted(folder_files(folder))
    assert (got / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    assert hub.cache_dir() == cache
