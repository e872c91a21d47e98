"""Generation: schedules and sampling, one step function per scheme (MaskGIT, ROAR, autoregressive with a KV
cache), classifier-free and multi-condition guidance, plans as data, and `generate`.

    from polymodal.generation import Plan, Step, generate
    plan = Plan((Step("tok_depth@224", "maskgit", num_steps=8, temperature=0.0, guidance_scale=2.0),
                 Step("caption", "autoregressive", temperature=0.0)))
    ids = generate(model.eval(), {"rgb@224": pixels}, plan, seed=0)  # {"tok_depth@224": (B, 196), "caption": (B, L)}

Semantics follow apple/ml-4m's ``GenerationSampler`` (``fourm/models/generate.py``) and its schedules
(``fourm/utils/generation.py``); each module's docstring says where. In short:

- encoder inputs at every step: every given condition plus every token committed so far (earlier targets in
  full, the current target's committed tokens); packing order differs from ml-4m's but attention is
  order-free, so only float rounding can differ;
- MaskGIT queries every position still to come (ascending), samples all, keeps the most confident by
  `torch.topk` (greedy: confidence 1 everywhere, as in ml-4m, so ties are broken by topk exactly as there);
- ROAR picks positions by ``argsort(committed + rand(N) * 1e-6)`` and decodes only those; ml-4m's linear schedule;
- guidance: ``u + s (c - u)``; "unconditional" drops the guided conditions the way ml-4m empties them; s == 1 or
  nothing to drop skips the second pass; multi-condition ``u + sum w_i (c_i - u)``; the guided set grows with
  earlier image targets under ``Plan.grow_conditioning`` (ml-4m's ``cfg_grow_conditioning``);
- captions: prompt ``[S_1]`` as the one encoder token, decoding starts from ``[S_1]`` at position 0 and stops at
  the closing sentinel (``[S_2]``), at most max_length - prompt tokens; the spans replace the prompt's sentinels
  (ml-4m's ``merge_span_masking``); ``Step(stop_at_eos=True)`` also stops at ``[EOS]`` (ml-4m does not);
- schedules: ml-4m's cosine (round half to even, remainder last), linear, and temperature schedules;
- ``seed``: step i reseeds with ``seed + i`` as ml-4m does, so sampled runs can match on the CPU too.

Differences, none of which changes greedy tokens beyond float rounding: passes are batched (ml-4m runs them one
after the other); cross-attention of a sample with no encoder token is zero, which is what ml-4m computes for such
a pass run alone; guidance mixes the decoder states before the bias-free vocabulary projection (linear, so equal
up to rounding); a finished sequence keeps being decoded with the batch but its later tokens are dropped (ml-4m's
merge drops them too); in-painting batches may give different numbers of tokens per sample (ml-4m assumes one
count). Tests: tests/generation/test_reference.py checks these semantics on the official-format tiny checkpoint.
"""

from .generate import ConditionError, StepResult, generate, generate_iter, initial_state
from .guidance import Guidance, GuidanceError, drop_condition
from .plan import Plan, PlanError, Step, preset
from .sampling import (
                       ScheduleError,
                       cosine_schedule,
                       filter_top_k,
                       filter_top_p,
                       linear_schedule,
                       sample,
                       select_confident,
                       temperature_schedule,
                       token_schedule,
)
from .schemes import PromptError, autoregressive_step, maskgit_step, merge_spans, roar_step

__all__ = ["ConditionError", "Guidance", "GuidanceError", "Plan", "PlanError", "PromptError", "ScheduleError", "Step",
           "StepResult", "autoregressive_step", "cosine_schedule", "drop_condition", "filter_top_k", "filter_top_p",
           "generate", "generate_iter", "initial_state", "linear_schedule", "maskgit_step", "merge_spans", "preset",
           "roar_step", "sample", "select_confident", "temperature_schedule", "token_schedule"]
