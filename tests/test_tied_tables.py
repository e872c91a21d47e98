"""`tie_sequence_tables`: one table per vocabulary for every text-like modality, stored once, loaded back."""

from __future__ import annotations

import dataclasses

import torch

from polymodal import modalities
from polymodal.data.batch import Batch, ModalityTokens
from polymodal.modalities import Kind, Modality
from polymodal.model import FourM, masked_modeling_loss

from .conftest import TINY_OUT, random_batch, tiny_config

SEQ2 = modalities.register(Modality("seq2@test", Kind.SEQUENCE, vocab_size=40, max_length=12, pos_table_len=32))


def _config(tie: bool):
    cfg = tiny_config(tie_sequence_tables=tie)
    return dataclasses.replace(cfg, domains_in=(*cfg.domains_in, "seq2@test"), domains_out=(*TINY_OUT, "seq2@test"))


def _batch(seed: int = 0) -> Batch:
    b = random_batch(3, seed=seed, all_targets=True)
    s = b["seq@test"]
    return b.replace(**{"seq2@test": ModalityTokens(s.values.flip(1), s.is_input, s.is_target)})


def test_one_table_serves_every_sequence_modality():
    torch.manual_seed(0)
    tied, untied = FourM(_config(True)), FourM(_config(False))
    tables = {id(m.weight) for g in (tied.encoder_embeddings, tied.decoder_embeddings)
              for name, e in g.items() if name.startswith("seq")
              for m in (e.token_emb, getattr(e, "to_logits", None)) if m is not None}
    assert len(tables) == 1
    assert untied.num_params() - tied.num_params() == 5 * 40 * tied.config.dim  # 6 tables became 1
    loss, _ = masked_modeling_loss(tied(_batch()))
    loss.backward()
    shared = tied.encoder_embeddings["seq@test"].token_emb.weight
    assert shared.grad is not None and shared.grad.abs().sum() > 0


def test_tied_tables_are_stored_once_and_load_back(tmp_path):
    torch.manual_seed(0)
    model = FourM(_config(True)).eval()
    with torch.no_grad():  # make the shared table distinguishable from a fresh init
        model.encoder_embeddings["seq@test"].token_emb.weight.add_(1.0)
    folder = model.save_pretrained(tmp_path / "m")
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert sum(k.endswith("token_emb.weight") and ".seq" in k for k in keys) + sum(
        k.endswith("to_logits.weight") and ".seq" in k for k in keys) == 1
    loaded = FourM.from_pretrained(folder).eval()
    batch = _batch(1)
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    for name in a:
        torch.testing.assert_close(a[name].logits, b[name].logits)
    w = loaded.decoder_embeddings["seq2@test"].to_logits.weight
    assert w is loaded.encoder_embeddings["seq@test"].token_emb.weight


def test_training_checkpoints_store_tied_tables_once_and_resume(tmp_path):
    from polymodal.train.checkpoint import CheckpointManager, Progress

    torch.manual_seed(0)
    model = FourM(_config(True))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for seed in range(2):
        loss, _ = masked_modeling_loss(model(_batch(seed)))
        loss.backward()
        opt.step()
        opt.zero_grad()
    ckpt = CheckpointManager(tmp_path)
    path = ckpt.save(model, opt, Progress(step=2), {})
    torch.manual_seed(1)
    fresh = FourM(_config(True))
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    assert ckpt.load(path, fresh, fresh_opt).step == 2
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    tied = fresh.encoder_embeddings["seq@test"].token_emb.weight
    assert fresh.decoder_embeddings["seq2@test"].to_logits.weight is tied


def test_a_training_checkpoint_loads_as_its_model(tmp_path):
    import pytest

    from polymodal.config import to_dict
    from polymodal.model.checkpoint import CheckpointError
    from polymodal.train.checkpoint import CheckpointManager, Progress

    torch.manual_seed(0)
    model = FourM(_config(True)).eval()
    with torch.no_grad():
        model.encoder_embeddings["seq@test"].token_emb.weight.add_(1.0)
    opt = torch.optim.AdamW(model.parameters())
    path = CheckpointManager(tmp_path).save(model, opt, Progress(step=3), {"objective": "fourm",
                                                                          "model": to_dict(model.config)})
    loaded = FourM.from_pretrained(path).eval()  # the run's config names the model; tied tables are aliases
    batch = _batch(2)
    with torch.no_grad():
        a, b = model(batch), loaded(batch)
    for name in a:
        torch.testing.assert_close(a[name].logits, b[name].logits, rtol=0, atol=0)
    assert loaded.decoder_embeddings["seq2@test"].to_logits.weight is \
        loaded.encoder_embeddings["seq@test"].token_emb.weight
    other = CheckpointManager(tmp_path / "tok").save(model, opt, Progress(step=1), {"objective": "vqvae",
                                                                                    "model": {}})
    with pytest.raises(CheckpointError, match="checkpoint of a 'vqvae' run, not of a 4M model"):
        FourM.from_pretrained(other)


def test_computed_position_tables_are_left_out_and_restored(tmp_path):
    torch.manual_seed(0)
    model = FourM(_config(False)).eval()
    folder = model.save_pretrained(tmp_path / "m")
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
    buffers = {k for k in model.state_dict() if k.endswith(".pos_emb")} - {
        n for n, _ in model.named_parameters()}
    assert buffers and not buffers & stored
    loaded = FourM.from_pretrained(folder)
    for k in buffers:
        assert torch.equal(loaded.state_dict()[k], model.state_dict()[k]), k
    # a table that differs from the computed one (an official file's own) is kept
    with torch.no_grad():
        model.encoder_embeddings["seq@test"].pos_emb.add_(1e-3)
    with safe_open(str(model.save_pretrained(tmp_path / "m2") / "model.safetensors"), "pt") as f:
        assert "encoder_embeddings.seq@test.pos_emb" in set(f.keys())
