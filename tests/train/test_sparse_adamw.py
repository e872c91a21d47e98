"""RowSparseAdamW with row-sparse embedding gradients against torch.optim.AdamW with dense ones."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from polymodal.config import ModelConfig, OptimConfig, apply_overrides
from polymodal.data.batch import Batch, ModalityTokens
from polymodal.modalities import Kind
from polymodal.model import FourM, masked_modeling_loss
from polymodal.train.dist import DistInfo
from polymodal.train.loop import sparse_embeddings_apply, train
from polymodal.train.optim import RowSparseAdamW, build_optimizer, clip_and_step, clip_grad_norm, sparse_embedding_grads

from .helpers import assert_same_weights, release_weights, tiny_experiment


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 8)
        self.emb2 = nn.Embedding(30, 8)
        self.lin = nn.Linear(8, 5)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.tanh(self.emb(a) + self.emb2(b))).square().mean()


def _run(model: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for i in range(steps):
        # few rows per step (with duplicates) so that many rows are active without a gradient, and some never used
        a = torch.randint(0, 25, (6, 3), generator=g)
        b = torch.randint(0, 30, (6, 3), generator=g)
        if i == steps // 2:
            for group in opt.param_groups:
                group["lr"] *= 0.5
        model(a, b).backward()
        if i % 4 == 3:  # gradient accumulation over two backward passes
            model(b % 25, a).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("dense_above", [1.0, 0.5, 0.0])  # active rows gathered / per table by count / dense
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_row_sparse_adamw_equals_adamw(fused: bool, wd: float, dense_above: float):
    torch.manual_seed(0)
    dense = Toy()
    sparse = copy.deepcopy(dense)
    sparse_embedding_grads(sparse)
    kw = dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=wd)
    _run(dense, torch.optim.AdamW(dense.parameters(), **kw), 20)
    opt = RowSparseAdamW(sparse.parameters(), **kw, fused=fused, dense_above=dense_above)
    _run(sparse, opt, 20)
    for (name, p), q in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    # rows never looked up did not move beyond the decay; moments stay zero there
    st = opt.state[sparse.emb.weight]
    assert not st["active"][25:].any() and st["exp_avg"][25:].eq(0).all()
    assert int(st["step"]) == 20


def _small_batch(cfg: ModelConfig, seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in cfg.domains_in:
        mod = cfg.modality(name)
        if mod.kind is not Kind.IMAGE_TOKENS:
            continue
        ids = torch.randint(0, mod.vocab_size, (2, mod.num_tokens), generator=g)
        perm = torch.rand(2, mod.num_tokens, generator=g)
        out[name] = ModalityTokens(ids, perm < 0.3, perm > 0.8)
    return Batch(out)


def test_row_sparse_adamw_trains_fourm_like_adamw():
    """Same parameters after a few steps of the test-size model, in float64 so that float rounding (which Adam's
    normalization amplifies where a gradient is near zero) does not hide a difference of the update."""
    cfg = ModelConfig.preset("test", domains_in=("tok_rgb@224", "tok_depth@224"),
                             domains_out=("tok_rgb@224", "tok_depth@224"),
                             vocab_sizes={"tok_rgb@224": 64, "tok_depth@224": 48})
    torch.manual_seed(0)
    dense = FourM(cfg).double()
    sparse = copy.deepcopy(dense)
    assert sparse_embedding_grads(sparse)
    opts = [torch.optim.AdamW(dense.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05),
            RowSparseAdamW(sparse.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05, dense_above=1.0)]
    for step in range(6):
        batch = _small_batch(cfg, step)
        for model, opt in zip((dense, sparse), opts):
            masked_modeling_loss(model(batch))[0].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    assert sparse.encoder_embeddings["tok_rgb@224"].token_emb.weight.grad is None
    for (name, p), q in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")


def test_clip_grad_norm_takes_sparse_gradients_like_torch_takes_dense_ones():
    def grads(sparse: bool) -> list[torch.nn.Parameter]:
        torch.manual_seed(0)
        emb, lin = torch.nn.Embedding(50, 8, sparse=sparse), torch.nn.Linear(8, 3)
        lin(emb(torch.tensor([1, 2, 2, 7]))).pow(2).sum().backward()  # a repeated row: summed when coalesced
        return [emb.weight, lin.weight, lin.bias]

    dense, sparse = grads(False), grads(True)
    assert sparse[0].grad.is_sparse
    expected = torch.nn.utils.clip_grad_norm_(dense, 0.5)
    total = clip_grad_norm(sparse, 0.5)
    torch.testing.assert_close(total, expected)
    for p, q in zip(dense, sparse):
        torch.testing.assert_close(q.grad.to_dense(), p.grad)
    assert sum(p.grad.to_dense().pow(2).sum() for p in sparse).sqrt() == pytest.approx(0.5, rel=1e-4)


def test_training_with_sparse_embeddings_matches_dense_and_resumes(tmp_path):
    """optim.sparse_embeddings (the default): the training loop's AdamW with row-sparse tables ends where the dense
    one does (float32 rounding apart); a run killed after a checkpoint resumes to the very same weights, and the
    setting may change on resume (the optimizer state of either loads into the other)."""
    dense = train(tiny_experiment(tmp_path / "dense", "optim.sparse_embeddings=false"))
    sparse = train(tiny_experiment(tmp_path / "sparse"))
    a, b = release_weights(dense.run_dir), release_weights(sparse.run_dir)
    assert_same_weights(a, b, atol=2e-4)
    assert sparse.final_loss == pytest.approx(dense.final_loss, rel=1e-3)
    paused = train(tiny_experiment(tmp_path / "paused", "train.stop_at=6"))
    assert paused.steps == 6
    train(tiny_experiment(tmp_path / "paused"))
    assert_same_weights(b, release_weights(tmp_path / "paused"))
    switched = train(tiny_experiment(tmp_path / "switched", "optim.sparse_embeddings=false", "train.stop_at=6"))
    assert switched.steps == 6
    train(tiny_experiment(tmp_path / "switched"))
    assert_same_weights(b, release_weights(tmp_path / "switched"), atol=2e-4)
    back = train(tiny_experiment(tmp_path / "back", "train.stop_at=6"))  # sparse state into a dense AdamW
    assert back.steps == 6
    train(tiny_experiment(tmp_path / "back", "optim.sparse_embeddings=false"))
    assert_same_weights(a, release_weights(tmp_path / "back"), atol=2e-4)


def test_sparse_embeddings_apply_where_gradients_can_be_sparse(tmp_path):
    """Distributed runs keep dense tables (DDP's reducer and FSDP2 take dense gradients), and so do GPU runs; one
    CPU process is sparse, whatever train.parallel asks; optim.sparse_embeddings=false is dense everywhere."""
    cfg = tiny_experiment(tmp_path, "train.parallel=fsdp")
    two = DistInfo(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    one = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    for mode in ("fsdp", "ddp", "auto"):
        assert not sparse_embeddings_apply(apply_overrides(cfg, [f"train.parallel={mode}"]), two)
        assert sparse_embeddings_apply(apply_overrides(cfg, [f"train.parallel={mode}"]), one)
    assert not sparse_embeddings_apply(apply_overrides(cfg, ["optim.sparse_embeddings=false"]), one)
    gpu = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cuda", 0))
    assert not sparse_embeddings_apply(cfg, gpu)  # a GPU keeps the dense kernel (no host sync per table)
    model = Toy()
    assert type(build_optimizer(model, OptimConfig(), 256, sparse=False)) is torch.optim.AdamW
    assert not model.emb.sparse
    assert type(build_optimizer(model, OptimConfig(), 256)) is RowSparseAdamW and model.emb.sparse


@pytest.mark.parametrize("max_norm", [0.05, 100.0])  # clipping, and a norm under the limit
def test_clipping_inside_the_sparse_kernel_equals_clipping_first(max_norm: float):
    """clip_and_step hands RowSparseAdamW's fused kernel the clipping factor (no multiply pass over every
    gradient): the same weights as clip_grad_norm then step, over steps with sparse tables and a dense fallback."""
    torch.manual_seed(0)
    first = Toy()
    sparse_embedding_grads(first)
    inside = copy.deepcopy(first)
    kw = dict(lr=3e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, fused=True, dense_above=0.5)
    opt_first, opt_inside = RowSparseAdamW(first.parameters(), **kw), RowSparseAdamW(inside.parameters(), **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(8):
        a, b = torch.randint(0, 25, (6, 3), generator=g), torch.randint(0, 30, (6, 3), generator=g)
        for model in (first, inside):
            (model(a, b) * 10).backward()
        params = list(first.parameters())
        expected = clip_grad_norm(params, max_norm)
        opt_first.step()
        total = clip_and_step(opt_inside, list(inside.parameters()), max_norm)
        torch.testing.assert_close(total, expected)
        for opt in (opt_first, opt_inside):
            opt.zero_grad(set_to_none=True)
    for (name, p), q in zip(first.named_parameters(), inside.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert opt_inside.state[inside.emb2.weight]["active"].all()  # emb2 took the dense path (every row used)
