"""Single-task specialists: the baseline 4M-21 claims to match, built from the any-to-any recipe itself.

A specialist has the same architecture, data and compute as the any-to-any model it is compared with, and learns
one mapping, RGB tokens -> one target. `specialist_config` derives it from the any-to-any recipe's config:

- ``model``: the same size and layer choices; ``domains_in = (source,)``, ``domains_out = (target,)``;
- ``masking``: every token of the source is an input and every token of the target a target: one Dirichlet
  component (``"uniform"``) over the two modalities, with the target's input alpha and the source's target alpha
  at 0, the input budget the source's token count and the target budget the target's whole length (a sequence's
  target then holds all its text: its one span, sentinels and [EOS] included);
- ``data``, ``optim`` and ``train`` (steps, batch size, schedule): unchanged, so the specialist sees the same
  samples for the same number of steps; only ``train.out_dir`` gets a ``_specialist_<task>`` suffix.

Compute is matched in steps and samples, not in tokens: a specialist's batch holds fewer tokens (64 inputs and one
target instead of the any-to-any budgets), so its steps are cheaper. That is the comparison 4M-21 draws ("same
training steps"); say so beside the numbers.

The recipe ``configs/specialist_world64.py`` applies this to a base recipe (``POLYMODAL_BASE_RECIPE``).
"""

from __future__ import annotations

import dataclasses

from ..config import ExperimentConfig, MaskingConfig

SOURCE = "tok_rgb@64"
# task (as in `tasks.TASKS`) -> target modality of the world at 64 px
TARGETS = {"depth": "tok_depth@64", "normal": "tok_normal@64", "semseg": "tok_semseg@64", "det": "det",
           "caption": "caption"}


def target_budget(cfg: ExperimentConfig, name: str) -> int:
    """Every token of ``name`` as targets: a grid's cells, or a sequence's length plus its sentinel, [EOS] and
    closing sentinel."""
    mod = cfg.model.modality(name)
    return mod.num_tokens if mod.is_grid else mod.max_length + 2


def specialist_config(base: ExperimentConfig, task: str, *, source: str = SOURCE,
                      target: str | None = None) -> ExperimentConfig:
    """The specialist of ``task`` (``source`` -> ``TARGETS[task]`` or ``target``) derived from ``base``, an
    any-to-any `ExperimentConfig` with ``objective="fourm"`` (see the module doc)."""
    if base.objective != "fourm":
        raise ValueError(f"a specialist derives from a 4M recipe (objective 'fourm'), got {base.objective!r}")
    if target is None:
        if task not in TARGETS:
            raise ValueError(f"no specialist target for task {task!r}; tasks: {', '.join(TARGETS)}")
        target = TARGETS[task]
    m = base.model
    missing = [n for n in (source, target) if n not in (*m.domains_in, *m.domains_out)]
    if missing:
        raise ValueError(f"the base recipe's model has no {', '.join(missing)} (domains: "
                         f"{', '.join(dict.fromkeys(m.domains_in + m.domains_out))}): same data means its domains")
    vocab = {k: v for k, v in m.vocab_sizes.items() if k in (source, target)}
    # A sequence target is also an input domain (never given as one in training: its input alpha is 0), since
    # 4M decodes sequences autoregressively with the tokens so far as inputs of that same modality.
    seq = not m.modality(target).is_grid
    model = dataclasses.replace(m, domains_in=(source, target) if seq else (source,), domains_out=(target,),
                                vocab_sizes=vocab)
    masking = MaskingConfig(
        num_input_tokens=model.modality(source).num_tokens if model.modality(source).is_grid else
        model.modality(source).max_length,
        num_target_tokens=target_budget(base, target), mixture="uniform",
        input_alphas={target: 0.0}, target_alphas={source: 0.0},
        refill=base.masking.refill, sequence_width=base.masking.sequence_width)
    train = dataclasses.replace(base.train, out_dir=f"{base.train.out_dir}_specialist_{task}")
    return dataclasses.replace(base, model=model, masking=masking, train=train)
