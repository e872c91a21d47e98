"""Retrieval from user inputs through a pipeline bundle: `retrieval.query` and `polymodal retrieve --model M
--index I --from ...` (in process), with an untrained tiny model whose global-embedding output is a 12-d vector."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from polymodal.cli import main
from polymodal.config import ModelConfig
from polymodal.data.world import render_sample, synthesize
from polymodal.model import FourM
from polymodal.pipeline import Pipeline, PipelineError
from polymodal.retrieval import GalleryIndex, embedding_outputs, query
from polymodal.tokenizers import MLPTokenizer, MLPTokenizerConfig

from ..pipeline.conftest import RGB
from ..viz.helpers import text_tokenizer

VEC = "tok_qvec_global"  # a name of this test's own (the modality registry is shared by the session)


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    torch.manual_seed(0)
    vec = MLPTokenizer(MLPTokenizerConfig(12, name=VEC, num_tokens=4, codebook_size=16, code_dim=4, hidden=16,
                                          depth=1)).eval()
    vec.register_modality(overwrite=True)
    text = text_tokenizer()
    cfg = ModelConfig.preset("test", domains_in=(RGB.name, "caption", VEC), domains_out=(VEC, "caption"), dim=32,
                             num_heads=2, vocab_sizes={"caption": text.vocab_size})
    return Pipeline(FourM(cfg), {VEC: vec, "text": text})


@pytest.fixture(scope="module")
def files(pipe, tmp_path_factory):
    """A bundle, a scene image, and indexes: one over a 6-sample world (pictures shown), others that don't fit."""
    d = tmp_path_factory.mktemp("query")
    Image.fromarray(render_sample(1, 5, 64)["rgb"]).save(d / "scene.png")
    world = d / "world"
    synthesize(world, 6, 32, seed=0, shard_size=6)
    ids = torch.randint(0, 16, (6, 4), generator=torch.Generator().manual_seed(3))
    index = GalleryIndex(pipe.tokenizers[VEC].decode(ids), modality="qvec_global", source=str(world))
    index.save(d / "index")
    GalleryIndex(torch.randn(6, 5), modality="qvec_global").save(d / "dim5")
    GalleryIndex(torch.randn(6, 12), modality="minilm_global").save(d / "other")
    return {"bundle": pipe.save(d / "bundle"), "image": d / "scene.png", "index": d / "index", "dim5": d / "dim5",
            "other": d / "other", "dir": d}


def test_query_predicts_decodes_and_searches(pipe, files, tmp_path):
    q = query(pipe, files["index"], {"rgb": files["image"], "caption": "a red sphere"}, k=3, out=tmp_path / "m.png")
    assert q.modality == VEC and embedding_outputs(pipe) == [VEC]
    assert q.result.vectors.shape == (1, 12) and len(q.result.hits.keys[0]) == 3
    # The query is the decoded greedy prediction (in the pipeline's default steps), and the scores are its cosine
    # similarities to the gallery.
    ids = pipe.generate({"rgb": files["image"], "caption": "a red sphere"}, [VEC], temperature=0.0).ids[VEC]
    assert torch.equal(q.result.vectors, pipe.tokenizers[VEC].decode(ids).float())
    index = GalleryIndex.load(files["index"])
    best = index.vectors[q.result.hits.indices[0, 0]]
    cos = torch.nn.functional.cosine_similarity(best, q.result.vectors[0], dim=0)
    assert abs(float(cos) - float(q.result.hits.scores[0, 0])) < 1e-4
    assert q.path == tmp_path / "m.png" and Image.open(q.path).size == q.picture.size
    # Same inputs, same matches; a batch of inputs gives one row per sample.
    again = query(pipe, index, {"rgb": files["image"], "caption": "a red sphere"}, k=3)
    assert again.result.hits.keys == q.result.hits.keys and again.path is None
    two = query(pipe, index, {"caption": ["a red sphere", "a blue cube"]}, k=2)
    assert two.result.vectors.shape == (2, 12) and len(two.result.hits.keys) == 2


def test_query_errors_are_clear(pipe, files):
    rgb = {"rgb": files["image"]}
    with pytest.raises(PipelineError, match="no global-embedding output"):
        query(Pipeline(pipe.model, {"text": pipe.tokenizers["text"]}), files["index"], rgb)
    with pytest.raises(PipelineError, match="decodes to vectors of 12, the index holds vectors of 5"):
        query(pipe, files["dim5"], rgb)
    with pytest.raises(PipelineError, match="built from minilm_global, but tok_qvec_global predicts qvec_global"):
        query(pipe, files["other"], rgb)
    with pytest.raises(PipelineError, match="caption is not a global-embedding output"):
        query(pipe, files["index"], rgb, modality="caption")
    with pytest.raises(PipelineError, match="nothing to retrieve from"):
        query(pipe, files["index"], {})
    with pytest.raises(PipelineError, match="k must be an integer from 1 to the gallery size 6"):
        query(pipe, files["index"], rgb, k=7)


def test_cli_retrieves_as_the_issue_spells_it(files, tmp_path, capsys):
    out = tmp_path / "matches.png"
    rc = main(["retrieve", "--model", str(files["bundle"]), "--index", str(files["index"]), "--from",
               f"rgb={files['image']}", "--from", "caption=a red sphere", "--k", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert f"query 0 ({VEC}): #" in captured.out and f"matches: {out}" in captured.out
    assert Image.open(out).size[0] > 0
    rc = main(["retrieve", "--model", str(files["bundle"]), "--index", str(files["index"]), "--from", "caption=x"])
    assert rc == 0 and (files["index"] / "query.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["--model", "BUNDLE", "--from", "caption=a cube"], "give --index and --from inputs"),
    (["--model", "BUNDLE", "--index", "IDX", "--from", "caption"], "is not of the form MODALITY=VALUE"),
    (["--model", "BUNDLE", "--index", "IDX", "--from", "dept=x"], "unknown modality 'dept'"),
    (["--model", "BUNDLE", "--index", "IDX", "--from", "caption="], "caption: empty text"),
    (["--model", "BUNDLE", "--index", "IDX"], "nothing to retrieve from"),
    (["--model", "BUNDLE", "--index", "DIM5", "--from", "caption=a cube"], "index holds vectors of 5"),
    (["--model", "BUNDLE", "--index", "OTHER", "--from", "caption=a cube"], "built from minilm_global"),
    (["--model", "BUNDLE", "--index", "DIR", "--from", "caption=a cube"], "is not a gallery index folder"),
])
def test_cli_bad_input_exits_2_with_one_line(files, capsys, args, message):
    subst = {"BUNDLE": files["bundle"], "IDX": files["index"], "DIM5": files["dim5"], "OTHER": files["other"],
             "DIR": files["dir"]}
    rc = main(["retrieve", *[str(subst.get(a, a)) for a in args]])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
