"""polymodal.eval: the evaluation suite of a model on a held-out world test set.

    from polymodal.eval import Oracle, evaluate, world_test_set, write_report
    samples = world_test_set(n=200, seed=1)
    results = evaluate(predict, samples, tasks=["depth", "normal", "semseg", "det", "caption"])
    write_report({"model": results}, "runs/eval")

Files: `metrics` (depth, normals, segmentation), `detection` (mAP@0.5, box matching), `captions` (the world's
caption grammar parsed back, scored against exact labels), `tasks` (what each task asks and its scores, the
generation checks), `predictors` (the predictor protocol, the oracle, tokenizer ceilings), `runner` (`evaluate`,
test sets), `report` (Markdown, JSON, bar chart), `specialists` (single-task baseline recipes).
"""

from .captions import ParsedCaption, caption_scores, parse_caption
from .detection import box_iou, mean_average_precision
from .metrics import depth_metrics, normal_metrics, segmentation_metrics
from .predictors import Oracle, Predict, ceiling_predictor, roundtrip
from .report import markdown_table, write_report
from .runner import evaluate, read_test_set, run_task, world_test_set
from .tasks import DEFAULT_TASKS, TASKS, generation_scores, retrieval_scores

__all__ = [
    "DEFAULT_TASKS", "TASKS", "Oracle", "ParsedCaption", "Predict", "box_iou", "caption_scores", "ceiling_predictor",
    "depth_metrics", "evaluate", "generation_scores", "markdown_table", "mean_average_precision", "normal_metrics",
    "parse_caption", "read_test_set", "retrieval_scores", "roundtrip", "run_task", "segmentation_metrics",
    "world_test_set", "write_report",
]
