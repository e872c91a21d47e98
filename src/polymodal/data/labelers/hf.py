"""A generic labeler over Hugging Face ``transformers`` pipelines (the optional extra ``polymodal[label]``).

``PipelineLabeler(name, model)`` runs the pipeline of its task on the stored image (so its labels are aligned with
it) and converts the output to the dataset's encodings; ``model`` is a local folder (model + processor, as
``save_pretrained`` writes them) or a hub id where a network is reachable.

=================  ============================  ==================================================================
labeler            pipeline task                 writes
=================  ============================  ==================================================================
hf-depth           depth-estimation              ``depth``: the model's ``predicted_depth`` resized to the image,
                                                 float32 (H, W), in the model's units (metric models: metres;
                                                 relative ones: their relative scale), clipped to 0..65.5 for PNG
hf-segmentation    image-segmentation            ``semseg``: uint8 (H, W) class ids, 0 = no segment, id k+1 = the
                                                 model's label k (``dataset.json`` lists the labels)
hf-detection       object-detection              ``det``: [{"class", "box": [x0, y0, x1, y1] pixels, "score"}]
hf-caption         (generate)                    ``caption``: the generated text. transformers 5 dropped the
                                                 ``image-to-text`` pipeline, so the model (an image-to-text model,
                                                 e.g. VisionEncoderDecoder, BLIP, GIT) is loaded with
                                                 ``AutoModelForImageTextToText`` and its ``generate`` called
hf-feature         image-feature-extraction      ``hf_feature``: float16 (D,) the mean of the last hidden states
=================  ============================  ==================================================================

Detections below ``threshold`` (default 0.5, the pipeline's) are dropped. The version recorded is the model's folder
or id with transformers' version.
"""

from __future__ import annotations

import numpy as np

TASKS = {
    "hf-depth": ("depth-estimation", ("depth",)),
    "hf-segmentation": ("image-segmentation", ("semseg",)),
    "hf-detection": ("object-detection", ("det",)),
    "hf-caption": ("image-to-text", ("caption",)),
    "hf-feature": ("image-feature-extraction", ("hf_feature",)),
}


class PipelineLabeler:
    def __init__(self, name: str, model: str, *, device: str = "cpu", threshold: float = 0.5,
                 max_new_tokens: int = 40):
        try:
            import transformers
        except ImportError:
            raise ImportError(f"labeler {name} needs transformers: pip install 'polymodal[label]'") from None
        self.name, self.threshold, self.max_new_tokens = name, threshold, max_new_tokens
        self.task, self.outputs = TASKS[name]
        self.version = f"{model} (transformers {transformers.__version__})"
        self.labels = None
        if self.task == "image-to-text":
            self.pipe = None
            self.model = transformers.AutoModelForImageTextToText.from_pretrained(model).to(device).eval()
            self.images = transformers.AutoImageProcessor.from_pretrained(model)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
            return
        self.pipe = transformers.pipeline(self.task, model=model, device=device)
        config = self.pipe.model.config
        if name == "hf-segmentation":
            self.labels = [config.id2label[i] for i in sorted(config.id2label)]

    def info(self) -> dict:
        out = {"name": self.name, "version": self.version, "task": self.task, "outputs": list(self.outputs)}
        if self.labels is not None:
            out["semseg_classes"] = ["none", *self.labels]
        return out

    def __call__(self, rgb: np.ndarray, *, key: str = "") -> dict:
        from PIL import Image

        image = Image.fromarray(rgb)
        h, w = rgb.shape[:2]
        if self.pipe is None:
            import torch

            pixels = self.images(images=image, return_tensors="pt").pixel_values.to(self.model.device)
            with torch.no_grad():
                ids = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens)
            return {"caption": self.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].strip()}
        kw = {"threshold": self.threshold} if self.task == "object-detection" else {}
        result = self.pipe(image, **kw)
        if self.task == "depth-estimation":
            import cv2

            pred = np.asarray(result["predicted_depth"], dtype=np.float32).squeeze()
            pred = cv2.resize(pred, (w, h), interpolation=cv2.INTER_LINEAR)
            return {"depth": np.clip(pred, 0.0, 65.5).astype(np.float32)}
        if self.task == "image-segmentation":
            seg = np.zeros((h, w), dtype=np.uint8)
            index = {name: i for i, name in enumerate(self.labels)}
            for part in sorted(result, key=lambda r: -(r.get("score") or 0.0))[::-1]:  # best painted last
                mask = np.asarray(part["mask"].resize((w, h))) > 127
                seg[mask] = min(index.get(part["label"], -1) + 1, 255)
            return {"semseg": seg}
        if self.task == "object-detection":
            det = []
            for r in result:
                b = r["box"]
                x0, y0 = max(0, int(np.floor(b["xmin"]))), max(0, int(np.floor(b["ymin"])))
                x1, y1 = min(w, int(np.ceil(b["xmax"]))), min(h, int(np.ceil(b["ymax"])))
                if x1 > x0 and y1 > y0:
                    det.append({"class": str(r["label"]), "box": [x0, y0, x1, y1], "score": round(r["score"], 4)})
            return {"det": det}
        feat = np.asarray(result, dtype=np.float32)
        feat = feat.reshape(-1, feat.shape[-1]).mean(axis=0)
        return {"hf_feature": feat.astype(np.float16)}
