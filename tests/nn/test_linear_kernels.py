"""polymodal.nn.linear: float32 linear layers by oneDNN, the same values and gradients as F.linear."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from polymodal.nn import linear as L

needs_onednn = pytest.mark.skipif(L._op() is None or not torch.backends.mkldnn.is_available(),
                                  reason="this torch has no oneDNN linear kernel")


@pytest.fixture
def onednn(monkeypatch):
    """The oneDNN path taken, whatever this machine's timing chose."""
    monkeypatch.setenv(L.ENV, "onednn")
    L.backend.cache_clear()
    assert L.backend() == "onednn"
    yield
    L.backend.cache_clear()


def _calls(monkeypatch) -> list:
    seen = []
    real = L._onednn

    def spy(*args):
        seen.append(tuple(args[0].shape))
        return real(*args)

    monkeypatch.setattr(L, "_onednn", spy)
    return seen


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(40, 48), (2, 20, 48), (3, 7, 2, 48)])
def test_values_and_gradients_match_f_linear(onednn, monkeypatch, shape, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g, dtype=torch.float64).float().requires_grad_()
    w = torch.randn(56, 48, generator=g).requires_grad_()
    b = torch.randn(56, generator=g).requires_grad_() if bias else None
    gy = torch.randn(*shape[:-1], 56, generator=g)
    seen = _calls(monkeypatch)
    y = L.linear(x, w, b)
    y.backward(gy)
    assert len(seen) == 3  # the forward and both backward products went through oneDNN
    got = [x.grad, w.grad] + ([b.grad] if bias else [])
    x2, w2 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    b2 = b.detach().double().requires_grad_() if bias else None
    y2 = F.linear(x2, w2, b2)
    y2.backward(gy.double())
    want = [x2.grad, w2.grad] + ([b2.grad] if bias else [])
    torch.testing.assert_close(y.double(), y2, rtol=1e-5, atol=1e-5)
    for a, e in zip(got, want):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_a_strided_input_and_a_frozen_weight(onednn):
    x = torch.randn(32, 96)[:, ::2].requires_grad_()  # not contiguous
    w = torch.randn(24, 48)
    y = L.linear(x, w)
    y.sum().backward()
    torch.testing.assert_close(y, F.linear(x.detach(), w), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, torch.ones(32, 24) @ w, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_what_keeps_f_linear(onednn, monkeypatch):
    seen = _calls(monkeypatch)
    w = torch.randn(64, 32)
    L.linear(torch.randn(L.MIN_ROWS - 1, 32), w)  # few rows, small weight: oneDNN's call cost does not pay
    L.linear(torch.randn(64, 32, dtype=torch.float64), w.double())
    y = L.linear(torch.randn(64, 32).bfloat16(), w.bfloat16())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = L.linear(torch.randn(64, 32), w)  # autocast's own bf16 product
    assert seen == [] and y.dtype == z.dtype == torch.bfloat16
    L.linear(torch.randn(1, 32), torch.randn(L.LARGE_WEIGHT // 32, 32))  # one row, a vocabulary-sized weight
    assert seen == [(1, 32)]


@needs_onednn
def test_matmul_matches(onednn):
    a, b = torch.randn(40, 24), torch.randn(24, 72)
    torch.testing.assert_close(L.matmul(a, b), a @ b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(L.matmul(b.t(), a.t()), b.t() @ a.t(), rtol=1e-5, atol=1e-5)


def test_the_environment_variable(monkeypatch):
    monkeypatch.setenv(L.ENV, "blas")
    L.backend.cache_clear()
    try:
        assert L.backend() == "blas"
        monkeypatch.setenv(L.ENV, "fast")
        L.backend.cache_clear()
        with pytest.raises(ValueError, match="POLYMODAL_FP32_LINEAR='fast': expected onednn, blas or auto"):
            L.backend()
    finally:
        L.backend.cache_clear()


def test_linear_is_an_nn_linear_with_its_state_names():
    lin = L.Linear(8, 4)
    assert isinstance(lin, torch.nn.Linear) and set(lin.state_dict()) == {"weight", "bias"}
    x = torch.randn(20, 8)
    torch.testing.assert_close(lin(x), F.linear(x, lin.weight, lin.bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_a_training_step_is_the_same_by_either_kernel(monkeypatch):
    """The tiny model's loss and every gradient, with oneDNN's products and with F.linear's."""
    from polymodal.model import FourM, masked_modeling_loss

    from ..conftest import random_batch, tiny_config

    def step(kernel: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
        monkeypatch.setenv(L.ENV, kernel)
        L.backend.cache_clear()
        seen = _calls(monkeypatch)
        torch.manual_seed(0)
        model = FourM(tiny_config())
        loss, _ = masked_modeling_loss(model(random_batch(8, all_targets=True)))
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, len(seen)

    try:
        loss_b, grads_b, calls_b = step("blas")
        loss_o, grads_o, calls_o = step("onednn")
    finally:
        L.backend.cache_clear()
    assert calls_b == 0 and calls_o > 20  # the blocks' layers, forward and backward
    torch.testing.assert_close(loss_o, loss_b, rtol=1e-5, atol=1e-5)
    assert grads_o.keys() == grads_b.keys()
    for name, g in grads_b.items():
        torch.testing.assert_close(grads_o[name], g, rtol=1e-4, atol=1e-5, msg=name)


@needs_onednn
def test_one_row_products_match_the_layer(onednn):
    from polymodal.nn.gemm import native_bf16_cpu

    torch.manual_seed(0)
    head = L.Linear(48, 3000, bias=False)
    x = torch.randn(3, 48)
    with torch.no_grad():
        f = L.one_row_products(head)
        assert f is not head
        torch.testing.assert_close(f(x), head(x), rtol=1e-5, atol=1e-5)
        if native_bf16_cpu():
            hb = L.Linear(48, 3000, bias=False).bfloat16()
            fb = L.one_row_products(hb)
            assert fb is not hb and torch.equal(fb(x.bfloat16()), hb(x.bfloat16()))  # the same bf16 kernel
        # what keeps the layer itself: a bias, gradients, another layer type
        biased = L.Linear(48, 30)
        assert L.one_row_products(biased) is biased
    assert L.one_row_products(head) is head  # grad enabled and a weight that requires grad
    seq = torch.nn.Sequential(head)
    assert L.one_row_products(seq) is seq


def test_one_row_products_keep_the_layer_under_blas(monkeypatch):
    monkeypatch.setenv(L.ENV, "blas")
    L.backend.cache_clear()
    try:
        head = L.Linear(16, 300, bias=False)
        with torch.no_grad():
            assert L.one_row_products(head) is head
    finally:
        L.backend.cache_clear()


def test_a_bad_setting_stops_a_command_in_one_line(monkeypatch, capsys):
    from polymodal.cli import main

    monkeypatch.setenv(L.ENV, "fastest")
    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "polymodal: POLYMODAL_FP32_LINEAR='fastest': expected onednn, blas or auto"


def test_info_names_the_kernel(monkeypatch, capsys):
    from polymodal.cli import main

    monkeypatch.setenv(L.ENV, "blas")
    L.backend.cache_clear()
    try:
        assert main(["info"]) == 0
    finally:
        L.backend.cache_clear()
    assert "float32 linear layers by torch's BLAS (POLYMODAL_FP32_LINEAR=onednn|blas|auto)" in capsys.readouterr().out


def test_buckets_bound_the_shapes_and_the_waste():
    sizes = {L.bucket(m) for m in range(L.MIN_ROWS, 4096)}
    assert len(sizes) <= 8 * 8  # an eighth of an octave: 8 per doubling
    for m in range(1, 4096):
        b = L.bucket(m)
        assert b >= m and (m < L.MIN_ROWS and b == m or b <= m * 1.125 + 8)
    assert [L.bucket(m) for m in (1, 15, 16, 197, 1024, 1100)] == [1, 15, 16, 208, 1024, 1152]


@needs_onednn
def test_padded_rows_change_nothing(onednn):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(197, 40, generator=g, requires_grad=True)  # 197 rows run as 208
    w = torch.randn(24, 40, generator=g, requires_grad=True)
    b = torch.randn(24, generator=g, requires_grad=True)
    gy = torch.randn(197, 24, generator=g)
    y = L.linear(x, w, b)
    y.backward(gy)
    assert y.shape == (197, 24)
    torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, gy @ w.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, gy.t() @ x.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(b.grad, gy.sum(0), rtol=1e-5, atol=1e-5)
    a, c = torch.randn(197, 300, generator=g), torch.randn(197, 40, generator=g)
    torch.testing.assert_close(L.matmul(a.t(), c), a.t() @ c, rtol=1e-5, atol=1e-4)  # the summed 197 padded
    e = torch.randn(300, 40, generator=g)
    torch.testing.assert_close(L.matmul(a, e), a @ e, rtol=1e-5, atol=1e-4)
