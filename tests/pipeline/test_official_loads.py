"""A released model's tokenizers are read from disk only when an input or output needs them, and each folder once:
4M-21's one edge DiVAE serves canny and SAM edges (both domains name the same repo in `hub.RELEASED_TOKENIZERS`)."""

from __future__ import annotations

import pytest
import torch

from polymodal import hub
from polymodal.config import ModelConfig
from polymodal.pipeline import Pipeline
from polymodal.pipeline.official import ReleaseTokenizers
from polymodal.tokenizers.ml4m import folder as ml4m_folder
from polymodal.tokenizers.ml4m.divae import DiVAE
from tests.conftest import single_thread

from ..conftest import fixtures_dir
from ..test_hub import COMMIT_A, cache, cache_repo, folder_files, no_network  # noqa: F401

one_thread = pytest.fixture(autouse=True)(single_thread)
EDGES = ("tok_canny_edge@224", "tok_sam_edge@224")


@pytest.fixture
def weight_reads(monkeypatch):
    """Every tokenizer weights file read, by path (the one reader of released folders: `read_official_folder`)."""
    reads: list[str] = []
    real = ml4m_folder.read_safetensors

    def counted(path, *args, **kwargs):
        reads.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(ml4m_folder, "read_safetensors", counted)
    return reads


def edge_config() -> ModelConfig:
    # The fixture's 1-channel DiVAE has 96 codes on a 14 x 14 grid: an edge tokenizer of that size.
    return ModelConfig.preset("test", domains_in=EDGES, domains_out=EDGES, vocab_sizes=dict.fromkeys(EDGES, 96))


def test_the_edge_divae_is_read_once_for_canny_and_sam_edges(cache, weight_reads):  # noqa: F811
    assert hub.RELEASED_TOKENIZERS[EDGES[0]] == hub.RELEASED_TOKENIZERS[EDGES[1]]
    cache_repo(cache, hub.RELEASED_TOKENIZERS[EDGES[0]],
               folder_files(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_depth@224")), commit=COMMIT_A)
    toks = ReleaseTokenizers(edge_config())
    assert weight_reads == [] and toks.loaded == ()
    canny, sam = toks[EDGES[0]], toks[EDGES[1]]
    assert len(weight_reads) == 1, weight_reads  # one file read for both domains (was one per domain)
    assert isinstance(canny, DiVAE) and isinstance(sam, DiVAE)
    assert (canny.cfg.name, sam.cfg.name) == EDGES and canny.cfg.values == sam.cfg.values == "edge"
    assert sam.decoder is canny.decoder and sam.encoder is canny.encoder  # one copy of the weights in memory
    ids = torch.randint(0, 96, (1, 196), generator=torch.Generator().manual_seed(0))
    assert torch.equal(canny.decode(ids, steps=1, sampler="ddim", generator=torch.Generator().manual_seed(1)),
                       sam.decode(ids, steps=1, sampler="ddim", generator=torch.Generator().manual_seed(1)))


def test_a_folder_given_for_two_modalities_is_read_for_each(weight_reads):
    """The same 1-channel folder as depth and as edges: depth and edges are normalized differently, so the edge
    domain gets its own tokenizer, not the depth one renamed."""
    from polymodal.pipeline.official import load_domain_tokenizer

    cfg = ModelConfig.preset("test", domains_in=("tok_depth@224", EDGES[0]), domains_out=(),
                             vocab_sizes={"tok_depth@224": 96, EDGES[0]: 96})
    folder = fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_depth@224")
    loaded: dict = {}
    depth = load_domain_tokenizer("tok_depth@224", folder, cfg.modality("tok_depth@224"), loaded=loaded)
    edge = load_domain_tokenizer(EDGES[0], folder, cfg.modality(EDGES[0]), loaded=loaded)
    assert (depth.cfg.values, edge.cfg.values) == ("depth", "edge") and len(weight_reads) == 2


def test_outputs_without_a_tokenizer_load_none(weight_reads):
    """RGB pixels -> boxes and caption: text only; no image tokenizer is read, though three are known."""
    text = fixtures_dir("ml4m-text-tokenizer", "text_tokenizer_4m_wordpiece_30k.json")
    folders = {d: fixtures_dir("ml4m-4m21-tiny-tokenizers", d) for d in ("tok_rgb@224", "tok_depth@224")}
    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), text_tokenizer=text, tokenizers=folders)
    rgb = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0))
    out = pipe.generate({"rgb@224": rgb}, ["det", "caption"], seed=0)
    assert set(out.values) == {"det", "caption"}
    assert pipe.tokenizers.loaded == ("text",) and weight_reads == []
    pipe.generate({"rgb@224": rgb}, ["tok_depth@224"], decode_steps=1, sampler="ddim")
    assert pipe.tokenizers.loaded == ("text", "tok_depth@224") and len(weight_reads) == 1


def test_a_bf16_pipeline_runs_the_divae_unet_in_bf16(cache):  # noqa: F811
    """``Pipeline.from_pretrained(dtype=bf16)`` of a release: the DiVAE's UNet (most of a decode) follows the
    transformer's dtype, its encoder stays float32; the decode stays close to the float32 one."""
    cache_repo(cache, hub.RELEASED_TOKENIZERS[EDGES[0]],
               folder_files(fixtures_dir("ml4m-4m21-tiny-tokenizers", "tok_depth@224")), commit=COMMIT_A)
    fp32, bf16 = ReleaseTokenizers(edge_config())[EDGES[0]], \
        ReleaseTokenizers(edge_config(), diffusion_dtype=torch.bfloat16)[EDGES[0]]
    assert {p.dtype for p in bf16.decoder.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in bf16.encoder.parameters()} == {p.dtype for p in fp32.decoder.parameters()} \
        == {torch.float32}
    ids = torch.randint(0, 96, (1, 196), generator=torch.Generator().manual_seed(0))
    a, b = (t.decode(ids, steps=2, sampler="ddim", generator=torch.Generator().manual_seed(1)) for t in (fp32, bf16))
    assert b.dtype == torch.float32 and a.shape == b.shape
    assert 0 < float((a - b).abs().max()) < 0.1  # bf16 moved it (really ran in bf16), but only a little


def test_the_pipeline_dtype_reaches_the_release_divaes():
    pipe = Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny"), dtype="bf16")
    assert pipe.tokenizers.diffusion_dtype == torch.bfloat16
    assert Pipeline.from_pretrained(fixtures_dir("ml4m-4m21-tiny")).tokenizers.diffusion_dtype is None
