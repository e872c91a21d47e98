"""polymodal.eval: a model's scores on a held-out world test set, beside its specialists and tokenizer ceilings.

    from polymodal.eval import Oracle, evaluate, world_test_set, write_report
    samples = world_test_set(n=200, seed=1)                       # world seed 1: held out from training (seed 0)
    results = evaluate(pipe, samples, tasks=["depth", "normal", "semseg", "det", "caption"], examples=3)
    write_report({"model": results}, "runs/eval")                 # results.md / .json / .png, examples_model.png

    polymodal eval --model weights/default --n 200 --out runs/eval --ceiling --compare depth=runs/spec_depth/release

Files: `metrics` (depth, normals, segmentation), `detection` (COCO mAP@0.5, box matching), `captions` (the world's
caption grammar parsed back, scored against exact labels), `tasks` (what each task asks, its scores, the generation
checks), `predictors` (the predictor protocol, the oracle, tokenizer ceilings), `pipeline_adapter` (a `Pipeline`
as a predictor), `runner` (`evaluate`, test sets), `bootstrap` (intervals over test scenes, paired gaps between
models), `report` and `examples` (Markdown, JSON, bar chart, example pictures), `specialists` (single-task
baselines from a 4M recipe), `command` (``polymodal eval``), `probe` (``polymodal probe``: linear probes on frozen
encoder features of world scenes).
"""

from .bootstrap import intervals, paired_gaps
from .captions import ParsedCaption, caption_scores, parse_caption
from .detection import box_iou, mean_average_precision
from .examples import example_grid
from .metrics import depth_metrics, normal_metrics, segmentation_metrics
from .pipeline_adapter import pipeline_predictor
from .predictors import Oracle, Predict, ceiling_predictor, roundtrip
from .report import markdown_table, write_report
from .runner import evaluate, read_test_set, run_task, world_test_set
from .specialists import specialist_config
from .tasks import DEFAULT_TASKS, TASKS, generation_scores, retrieval_scores

__all__ = [
    "DEFAULT_TASKS", "Oracle", "ParsedCaption", "Predict", "TASKS", "box_iou", "caption_scores", "ceiling_predictor",
    "depth_metrics", "evaluate", "example_grid", "generation_scores", "intervals", "markdown_table",
    "mean_average_precision", "normal_metrics", "paired_gaps", "parse_caption", "pipeline_predictor", "read_test_set",
    "retrieval_scores", "roundtrip", "run_task", "segmentation_metrics", "specialist_config", "world_test_set",
    "write_report",
]
