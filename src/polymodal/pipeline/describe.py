"""What a pipeline takes and gives, as `polymodal info` shows it: every model domain with the short name that
`Pipeline.resolve` (and so `polymodal generate --from/--to`) accepts for it, whether it is an input, an output or
both, and the tokenizer that decodes it.

    for row in domain_rows(Pipeline.from_pretrained("weights/default")):
        print(row.name, row.short, row.is_input, row.is_output, row.tokenizer)
    # tok_depth@64 depth True True ViTVQVAE: depth images, 64 px -> 8x8 tokens, 512 codes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..modalities import Kind
from ..viz.decode import TEXT, base_name
from .bundle import Pipeline
from .official import ReleaseTokenizers


@dataclass(frozen=True)
class DomainRow:
    """One model domain: ``short`` is the shorter name `Pipeline.resolve` maps to it ("" where none does: another
    domain of the same base name takes it); ``tokenizer`` says what encodes and decodes its values."""

    name: str
    short: str
    kind: str
    is_input: bool
    is_output: bool
    tokenizer: str


def tokenizer_summary(tok: Any) -> str:
    """One line: class, what it encodes, its token layout and vocabulary."""
    cfg = getattr(tok, "cfg", None)
    kind = type(tok).__name__
    if hasattr(cfg, "image_size") and hasattr(cfg, "patch_size"):
        g = cfg.image_size // cfg.patch_size
        values = getattr(cfg, "values", "image")
        return f"{kind}: {values} images, {cfg.image_size} px -> {g}x{g} tokens, {tok.vocab_size} codes"
    if hasattr(cfg, "in_dim"):
        return f"{kind}: vectors of {cfg.in_dim} -> {tok.num_tokens} tokens, {tok.vocab_size} codes"
    return f"{kind}: {tok.vocab_size} ids"


def short_name(pipe: Pipeline, name: str) -> str:
    """The base name (``tok_depth@64`` -> ``depth``) where it resolves to ``name``, else "". A domain that is an
    input and an output but takes the short name in one role only says which (a model with RGB pixels and RGB
    tokens: ``rgb`` is the pixels in ``--from``, the tokens in ``--to``)."""
    short = base_name(name)
    if short == name:
        return ""
    roles = []
    for flag, output, domains in (("--from", False, pipe.inputs), ("--to", True, pipe.outputs)):
        if name in domains:
            try:
                roles.append((flag, pipe.resolve(short, output=output) == name))
            except ValueError:
                roles.append((flag, False))
    if all(ok for _, ok in roles):
        return short
    return next((f"{short} ({flag} only)" for flag, ok in roles if ok), "")


def domain_rows(pipe: Pipeline) -> list[DomainRow]:
    """Every domain of the model, inputs first then outputs only, in the model's order."""
    rows = []
    for name in dict.fromkeys((*pipe.inputs, *pipe.outputs)):
        mod = pipe.model.config.modality(name)
        toks = pipe.tokenizers
        release = isinstance(toks, ReleaseTokenizers)
        tok = None if release and name not in toks.loaded else toks.get(name)
        if tok is None and mod.kind is Kind.SEQUENCE:
            tok = toks.get(TEXT)
        if release and name in toks.sources and tok is None:  # a released model's: described without loading it
            what = f"{toks.sources[name]} (loaded when used)"
        elif tok is not None:
            what = tokenizer_summary(tok)
        elif release and mod.kind is Kind.SEQUENCE:
            what = "none given: --text-tokenizer text_tokenizer_4m_wordpiece_30k.json"
        elif mod.kind is Kind.PIXELS:
            what = f"pixels ({mod.channels} channels, {mod.image_size[0]} px): an image file in, no tokenizer"
        elif mod.kind is Kind.SEQUENCE_EMB:
            what = f"vectors of {mod.emb_dim} in, no tokenizer"
        else:
            what = "none in this bundle: given and generated as token ids"
        rows.append(DomainRow(name, short_name(pipe, name), mod.kind.value, name in pipe.inputs,
                              name in pipe.outputs, what))
    return rows


def example_command(rows: list[DomainRow], model_arg: str | None = None) -> str:
    """A `polymodal generate` line that runs on this model: an image in (rgb where it has one), an image (depth
    where it has one) and a text out, each by its short name where it has one."""
    arg = {r.name: r.short if r.short and " " not in r.short else r.name for r in rows}  # not "x (--to only)"
    ins = [r.name for r in rows if r.is_input]
    given = next((n for n in ins if arg[n] == "rgb"), ins[0])
    ranked = sorted(rows, key=lambda r: arg[r.name] != "depth")
    outs = [next((r.name for r in ranked if r.is_output and r.kind == kind and r.name != given), None)
            for kind in (Kind.IMAGE_TOKENS.value, Kind.SEQUENCE.value)]
    outs = [arg[o] for o in outs if o] or [r.name for r in rows if r.is_output and r.name != given][:1]
    model = f" --model {model_arg}" if model_arg else ""
    return f"polymodal generate{model} --from {arg[given]}=FILE --to {','.join(outs)} --out out/"


def describe(pipe: Pipeline, *, model_arg: str | None = None) -> str:
    """The table `polymodal info` prints: one line per domain (name, short name, input, output, tokenizer), then
    an example command."""
    rows = domain_rows(pipe)
    lines = ["generate --from/--to take the name or the short name",
             f"{'name':24} {'short name':16} {'in':3} {'out':3}  tokenizer"]
    for r in rows:
        lines.append(f"{r.name:24} {r.short or '-':16} {'yes' if r.is_input else '-':3} "
                     f"{'yes' if r.is_output else '-':3}  {r.tokenizer}")
    return "\n".join(lines) + f"\n\ne.g. {example_command(rows, model_arg)}"


__all__ = ["DomainRow", "describe", "domain_rows", "example_command", "short_name", "tokenizer_summary"]
