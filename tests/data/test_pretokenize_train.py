"""Pre-tokenization of a world dataset with tiny untrained tokenizers, then 4M training from the token shards
(`data.source="tokens"`), stopped and resumed with the loader position from the checkpoint."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from polymodal.cli import main
from polymodal.config import DataConfig, ExperimentConfig, MaskingConfig, ModelConfig, OptimConfig, TrainConfig
from polymodal.data.sources import TokenSource, read_token_shard
from polymodal.data.token_stream import register_token_modalities
from polymodal.data.world import synthesize
from polymodal.tokenizers import ViTVQVAE
from polymodal.tokenizers.text import train_text_tokenizer
from polymodal.tokenizers.vqvae import VQVAEConfig
from polymodal.train.loop import train

from ..train.helpers import assert_same_weights, release_weights

TINY = dict(image_size=32, patch_size=8, dim=32, encoder_depth=1, decoder_depth=1, num_heads=4, codebook_size=64,
            name="")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretok")
    synthesize(root / "world", 24, 32, 0, 1, shard_size=8)
    torch.manual_seed(0)
    for values in ("rgb", "depth"):
        ViTVQVAE(VQVAEConfig(values=values, **{**TINY, "name": f"tok_{values}@pt32"})).save_pretrained(
            root / f"tok_{values}")
    corpus = root / "captions.txt"
    corpus.write_text("a red cube on a floor\na blue sphere near a wall\nthe person stands beside a torus\n")
    train_text_tokenizer([corpus], vocab_size=4400).save_pretrained(root / "tok_text")
    args = ["data", "tokenize", str(root / "world"), "--tokenizer", f"rgb={root / 'tok_rgb'}",
            f"depth={root / 'tok_depth'}", f"caption={root / 'tok_text'}", f"det={root / 'tok_text'}",
            "--crops", "3", "--out", str(root / "tokens"), "--workers", "2", "--quiet"]
    assert main(args) == 0
    return root


def test_tokens_hold_every_crop_of_every_sample(tokens):
    info = json.loads((tokens / "tokens" / "tokens.json").read_text())
    assert info["complete"] and info["count"] == 24 and info["counts"] == [8, 8, 8] and info["crops"] == 3
    assert set(info["modalities"]) == {"tok_rgb@pt32", "tok_depth@pt32", "caption", "det"}
    samples = read_token_shard(tokens / "tokens" / "tokens-000000.tar")
    s = samples[0]
    assert s["crops"].shape == (3, 5) and s["crops"][0].tolist() == [0, 0, 32, 32, 0]  # first: the centre crop
    assert s["tok_rgb@pt32"].shape == (3, 16) and s["tok_rgb@pt32"].dtype == np.int16
    assert s["caption"].shape[0] == 3 and (s["caption"][0] == s["caption"][1]).all()
    # rerunning finds every shard complete and changes nothing
    before = (tokens / "tokens" / "tokens-000001.tar").stat().st_mtime_ns
    main(["data", "tokenize", str(tokens / "world"), "--tokenizer", f"rgb={tokens / 'tok_rgb'}",
          f"depth={tokens / 'tok_depth'}", f"caption={tokens / 'tok_text'}", f"det={tokens / 'tok_text'}",
          "--crops", "3", "--out", str(tokens / "tokens"), "--quiet"])
    assert (tokens / "tokens" / "tokens-000001.tar").stat().st_mtime_ns == before


def experiment(tokens, out, steps):
    register_token_modalities(str(tokens / "tokens"))
    names = ("tok_rgb@pt32", "tok_depth@pt32", "caption", "det")
    src = TokenSource(tokens / "tokens")
    vocab = {n: src.info["modalities"][n]["spec"]["vocab_size"] for n in ("caption", "det")}
    return ExperimentConfig(
        objective="fourm",
        model=ModelConfig.preset("test", domains_in=names, domains_out=names, vocab_sizes=vocab),
        masking=MaskingConfig(num_input_tokens=24, num_target_tokens=24),
        data=DataConfig(source="tokens", path=str(tokens / "tokens"), val_samples=8, workers=0, shuffle_buffer=8,
                        mask_chunk=4),
        optim=OptimConfig(base_lr=1e-2),
        train=TrainConfig(out_dir=str(out), steps=steps, batch_size=8, save_every=3, log_every=1,
                          progress=False, tensorboard=False),
    )


def test_train_from_tokens_and_resume(tokens, tmp_path):
    whole = train(experiment(tokens, tmp_path / "whole", 6))
    assert np.isfinite(whole.final_loss) and whole.val_loss is not None
    state = json.loads((tmp_path / "whole" / "checkpoints" / "step_00000003" / "state.json").read_text())
    assert state["progress"]["data"]["batches"] == 3
    # A run stopped after step 3: its folder as it was then (the step-6 checkpoint and the release removed).
    split = tmp_path / "split"
    shutil.copytree(tmp_path / "whole", split)
    shutil.rmtree(split / "checkpoints" / "step_00000006")
    shutil.rmtree(split / "release")
    resumed = train(experiment(tokens, split, 6))
    assert resumed.steps == 6
    assert_same_weights(release_weights(tmp_path / "whole"), release_weights(split))


def test_train_on_a_mixture_with_a_text_only_source(tokens, tmp_path):
    from dataclasses import replace

    cfg = experiment(tokens, tmp_path / "mix", 2)
    data = replace(cfg.data, path="", mixture={str(tokens / "tokens"): 0.8, str(tokens / "captions.txt"): 0.2},
                   text_tokenizer=str(tokens / "tok_text"))
    result = train(replace(cfg, data=data))
    assert result.steps == 2 and np.isfinite(result.final_loss)
    state = json.loads((tmp_path / "mix" / "checkpoints" / "step_00000002" / "state.json").read_text())
    assert state["progress"]["data"]["weights"] == [0.8, 0.2]


def test_validation_reads_the_held_out_dataset(tokens, tmp_path):
    from dataclasses import replace

    from polymodal.data.token_stream import TokenStream
    from polymodal.modalities import get

    synthesize(tmp_path / "world_val", 8, 32, 1, 1, shard_size=8)  # another world seed: unseen scenes
    assert main(["data", "tokenize", str(tmp_path / "world_val"), "--tokenizer", f"rgb={tokens / 'tok_rgb'}",
                 f"depth={tokens / 'tok_depth'}", f"caption={tokens / 'tok_text'}", f"det={tokens / 'tok_text'}",
                 "--out", str(tmp_path / "val_tokens"), "--quiet"]) == 0
    cfg = experiment(tokens, tmp_path / "run", 1)
    mods = {n: get(n) for n in cfg.model.domains_in}
    head = TokenStream(cfg, mods).val_batches(0, 1, batch_size=8)[0]
    held = TokenStream(replace(cfg, data=replace(cfg.data, val_path=str(tmp_path / "val_tokens"))),
                       mods).val_batches(0, 1, batch_size=8)[0]
    val = read_token_shard(tmp_path / "val_tokens" / "tokens-000000.tar")
    rgb = "tok_rgb@pt32"
    assert torch.equal(held[rgb].values, torch.as_tensor(np.stack([s[rgb][0] for s in val])).long())
    assert not torch.equal(head[rgb].values, held[rgb].values)
