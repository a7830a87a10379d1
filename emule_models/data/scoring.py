"""Data-quality scores for subset selection, from a small proxy model - computed once per search, then cached.

``proxy_scores`` trains a small model of the same family for a few epochs on the train split, once per seed, and
returns per row:

- ``el2n``: ``||softmax(logits) - onehot(label)||_2`` averaged over seeds (Paul et al. 2021). High = hard,
  ambiguous or mislabelled.
- ``embeddings``: the pooled representation fed to the classifier head, L2-normalised per seed and concatenated
  over seeds (a squared distance is then a sum over the seeds' spaces), for k-center coverage.

The result is cached as ``.npz`` under a key made of the dataset name, a fingerprint of the train split's content
and every proxy setting, so a search - or a rerun of it - trains the proxy once; trials only call ``select``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from emule_models.config import ModelConfig
from emule_models.data.dataset import Dataset, Split
from emule_models.model import build_model
from emule_models.train import TrainConfig, fit

SCORES_VERSION = 1  # bump when the scoring itself changes, so old caches are not reused


def fingerprint(split: Split) -> str:
    """SHA-256 over a split's labels, inputs and masks (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for kind, arrays in (("labels", {"": split.labels}), ("inputs", split.inputs), ("valid", split.valid)):
        for name in sorted(arrays):
            a = np.ascontiguousarray(arrays[name])
            h.update(f"{kind}:{name}:{a.shape}:{a.dtype}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def proxy_config(dataset: Dataset, width: int = 32, depth: int = 1, heads: int = 2, max_tokens: int = 16,
                 patch_len: int | None = None, image_patch: int | None = None) -> ModelConfig:
    """The proxy's architecture: small, with patches sized so each series gives at most ``max_tokens`` tokens."""
    series = [m.length for m in dataset.modalities if m.kind == "series"]
    sides = [min(m.height, m.width) for m in dataset.modalities if m.kind == "image"]
    if patch_len is None:
        patch_len = min(max(1, math.ceil(max(series, default=1) / max_tokens)), min(series, default=1))
    if image_patch is None:
        image_patch = max(1, min(sides, default=4) // 4)  # 4 x 4 tokens per image
    return ModelConfig(modalities=dataset.modalities, num_classes=len(dataset.classes), width=width, depth=depth,
                       heads=heads, patch_len=patch_len, image_patch=image_patch)


def proxy_scores(dataset: Dataset, epochs: int = 10, seeds: int = 3, width: int = 32, depth: int = 1, heads: int = 2,
                 lr: float = 3e-3, batch_size: int = 32, patch_len: int | None = None,
                 image_patch: int | None = None, cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """EL2N scores and embeddings of the train split's rows, from ``seeds`` proxy models of ``epochs`` epochs.

    Args:
        dataset: scores are for ``dataset.train``, row for row.
        epochs, seeds, width, depth, heads, lr, batch_size, patch_len, image_patch: the proxy; part of the cache key.
        cache_dir: where ``<name>-<key>.npz`` is kept; None computes without caching.

    Returns:
        ``{"el2n": (N,) float32, "embeddings": (N, seeds * width) float32}``.
    """
    cfg = proxy_config(dataset, width, depth, heads, patch_len=patch_len, image_patch=image_patch)
    settings = {"version": SCORES_VERSION, "epochs": epochs, "seeds": seeds, "lr": lr, "batch_size": batch_size,
                "model": cfg.to_dict()}
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{cache_key(dataset, settings)}.npz"
        if path.exists():
            with np.load(path) as cached:
                return {"el2n": cached["el2n"], "embeddings": cached["embeddings"]}
    el2n, embeddings = [], []
    for seed in range(seeds):
        e, z = _train_proxy(dataset, cfg, epochs, lr, batch_size, seed)
        el2n.append(e)
        embeddings.append(z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-8))
    out = {"el2n": np.mean(el2n, 0).astype(np.float32), "embeddings": np.concatenate(embeddings, 1).astype(np.float32)}
    if path is not None:
        _save_atomic(path, out, settings)
    return out


def cache_key(dataset: Dataset, settings: dict) -> str:
    """``<name>-<hash>``: the hash covers the train split's content and the proxy settings."""
    digest = hashlib.sha256((fingerprint(dataset.train) + json.dumps(settings, sort_keys=True)).encode())
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', dataset.name)}-{digest.hexdigest()[:20]}"


def _train_proxy(dataset: Dataset, cfg: ModelConfig, epochs: int, lr: float, batch_size: int,
                 seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One proxy run: train, then (EL2N, pooled embedding) for every train row, in eval mode."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    fit(model, dataset.train, dataset.val, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed))
    model.eval()
    pooled: list[torch.Tensor] = []
    hook = model.head.register_forward_hook(lambda _m, args, _out: pooled.append(args[0].detach()))  # (B, W)
    el2n = []
    try:
        with torch.no_grad():
            train = dataset.train
            for start in range(0, len(train), 256):
                inputs, valid, labels = train.batch(np.arange(start, min(start + 256, len(train))))
                probs = torch.softmax(model(inputs, valid), -1)  # (B, K)
                onehot = torch.nn.functional.one_hot(labels, cfg.num_classes).to(probs.dtype)
                el2n.append((probs - onehot).norm(dim=-1))  # (B,)
    finally:
        hook.remove()
    return torch.cat(el2n).numpy(), torch.cat(pooled).numpy()


def _save_atomic(path: Path, arrays: dict[str, np.ndarray], settings: dict) -> None:
    """Write to a temporary file and rename, so a concurrent reader never sees half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, settings=np.array(json.dumps(settings)), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other users of a shared cache must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
