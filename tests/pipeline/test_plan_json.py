"""A plan's JSON (what a bundle's ``pipeline.json`` stores): a round trip, and a plan written before ``Step.steps``
became ``Step.num_steps`` still reads."""

from __future__ import annotations

import json

import pytest

from polymodal.generation import Plan, Step
from polymodal.pipeline.inputs import PipelineError
from polymodal.pipeline.plans import plan_from_dict, plan_to_dict

PLAN = Plan((Step("tok_depth@224", "roar", num_steps=6, temperature=0.5, guidance_scale=2.0, guide=("rgb@224",)),
             Step("caption", "autoregressive", temperature=0.3, stop_at_eos=True)), grow_conditioning=True)


def test_round_trip_through_json():
    data = json.loads(json.dumps(plan_to_dict(PLAN)))
    assert data["steps"][0]["num_steps"] == 6 and "steps" not in data["steps"][0]
    assert plan_from_dict(data, "mine") == PLAN


def test_a_plan_written_with_the_old_field_name_reads():
    old = {"steps": [{"target": "tok_depth@224", "scheme": "roar", "steps": 6, "temperature": 0.5,
                      "guidance_scale": 2.0, "guide": ["rgb@224"]},
                     {"target": "caption", "scheme": "autoregressive", "steps": 8, "temperature": 0.3,
                      "stop_at_eos": True}],
           "grow_conditioning": True}
    assert plan_from_dict(old, "old") == PLAN


def test_a_step_with_an_unknown_field_is_refused():
    with pytest.raises(PipelineError, match="plan 'bad': not a plan .*'stepz'"):
        plan_from_dict({"steps": [{"target": "caption", "scheme": "autoregressive", "stepz": 3}]}, "bad")
