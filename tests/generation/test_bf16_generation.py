"""Generation with the weights held in bfloat16 (`FourM.to`, ``Pipeline.from_pretrained(dtype=)``, ``generate
--dtype``): every scheme runs end to end, and greedy MaskGIT keeps most of float32's tokens (bf16 moves logits by
~1%, so near ties flip: on this random tiny checkpoint ~92% of the ids agree; a broken path agrees ~1/96)."""

from __future__ import annotations

import copy

import pytest
import torch

from polymodal.cli import main
from polymodal.generation import Plan, Step, generate
from polymodal.interop.ml4m import load_checkpoint
from polymodal.pipeline import Pipeline, PipelineError

from ..conftest import fixtures_dir

DEPTH = "tok_depth@224"


@pytest.fixture(scope="module")
def models():
    fp32 = load_checkpoint(fixtures_dir("ml4m-4m21-tiny")).eval()
    return fp32, copy.deepcopy(fp32).to(torch.bfloat16).eval()


@pytest.fixture(scope="module")
def rgb():
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_greedy_maskgit_in_bf16_keeps_most_tokens(models, rgb, scale):
    plan = Plan((Step(DEPTH, "maskgit", temperature=0.0, guidance_scale=scale, num_steps=4),))
    ref = generate(models[0], {"rgb@224": rgb}, plan, seed=0)[DEPTH]
    out = generate(models[1], {"rgb@224": rgb}, plan, seed=0)[DEPTH]
    assert out.dtype == torch.long and out.shape == ref.shape
    assert float((out == ref).float().mean()) > 0.8


def test_every_scheme_runs_in_bf16(models, rgb):
    vocab = models[1].config.modality(DEPTH).vocab_size
    plan = Plan((Step(DEPTH, "roar", temperature=1.0, top_k=10, num_steps=3),
                 Step("caption", "autoregressive", temperature=0.7, top_p=0.9, max_tokens=6, guidance_scale=2.0)))
    out = generate(models[1], {"rgb@224": rgb}, plan, seed=0)
    assert out[DEPTH].shape == (2, 196) and int(out[DEPTH].max()) < vocab
    assert out["caption"].shape[0] == 2


def test_pipeline_loads_weights_in_the_dtype_asked():
    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), dtype="bf16")
    assert {p.dtype for p in pipe.model.parameters()} == {torch.bfloat16}
    with pytest.raises(PipelineError, match=r"^dtype 'int8' is not a weight dtype; choose one of float32, "
                                            r"bfloat16, float16$"):
        Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), dtype="int8")


def test_generate_refuses_an_unknown_dtype_in_one_line(tmp_path, capsys):
    argv = ["generate", "--model", str(fixtures_dir("ml4m-4m21-tiny")), "--to", "depth", "--out", str(tmp_path / "o"),
            "--dtype", "int8"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == ("polymodal generate: dtype 'int8' is not a weight dtype; choose one "
                                               "of float32, bfloat16, float16")
    assert not (tmp_path / "o").exists()
