"""Downstream evaluation: embeddings and baseline features probed on the same tasks, splits and probes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from rdkit import Chem
from tqdm.auto import tqdm

from ..modeling import EMBEDDING_KINDS
from .features import BASELINES, FeatureSpec, baseline_features
from .names import BASELINE_NAMES
from .probes import PROBES, evaluate_probes
from .tasks import TASKS, Task, load_task

# Embeddings are dense, finite (checked) and not heavy-tailed: standardising is all they need.
EMBEDDING_SPEC = FeatureSpec(compute=None, impute=False, scale=True)
EmbedFn = Callable[[list[str], str], np.ndarray]


def _embed(embed_fn: EmbedFn, smiles: list[str], kind: str) -> np.ndarray:
    """Call ``embed_fn`` and check that it returned one finite row per molecule."""
    X = np.asarray(embed_fn(smiles, kind), dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(smiles):
        raise ValueError(f"embed_fn(smiles, {kind!r}) must return shape [{len(smiles)}, E], got {X.shape}")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise ValueError(
            f"embed_fn(smiles, {kind!r}) returned non-finite values for {len(bad)} molecules, "
            f"e.g. {smiles[bad[0]]!r}"
        )
    return X


def _aggregate(per_fold: list[dict[str, dict]]) -> dict[str, dict]:
    """Mean (and, over several folds, standard deviation) of each probe's metrics across outer folds."""
    out = {}
    for probe in per_fold[0]:
        metrics = {}
        for metric in (k for k in per_fold[0][probe] if k != "selected"):
            values = np.array([fold[probe][metric] for fold in per_fold])
            metrics[metric] = float(values.mean())
            if len(values) > 1:
                metrics[f"{metric}_std"] = float(values.std(ddof=1))
        if probe == "best":
            metrics["selected"] = [fold["best"]["selected"] for fold in per_fold]
        out[probe] = metrics
    return out


def evaluate_downstream(
    embed_fn: EmbedFn | None = None,
    kinds: Sequence[str] = EMBEDDING_KINDS,
    baselines: Sequence[str] = BASELINE_NAMES,
    tasks: Sequence[str | Task] = TASKS,
    probes: dict[str, Sequence[str]] | None = None,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
) -> dict:
    """Probe embeddings and baseline features on downstream tasks.

    Args:
        embed_fn: ``embed_fn(smiles, kind) -> [N, E]`` array; receives RDKit-canonical SMILES. ``None``
            evaluates the baselines only.
        kinds: embedding kinds to request from ``embed_fn``; each becomes a feature set of that name.
        baselines: some of ``names.BASELINE_NAMES`` (``"ecfp4"``, ``"rdkit2d"``).
        tasks: task names (``tasks.TASKS``) or ready ``Task`` objects (e.g. ``load_task(...).subsample(n)``).
        probes: ``{"regression": names, "classification": names}`` to run fewer probes (either key may be
            left out). The random forests cost the most: drop them for quick comparisons of many models.
        seed: seeds the FreeSolv folds, the inner folds and the random forests.
        n_jobs: parallel inner-CV fits (the evaluation machines have two cores).
        progress: show tqdm progress bars.

    Returns:
        ``{"tasks": {task: {feature_set: {probe: {metric: value}}}}, "excluded": {task: [records]},
        "settings": {...}}``. Metrics are ``rmse`` (regression) or ``accuracy`` and ``roc_auc``
        (classification), averaged over outer folds with ``<metric>_std`` when there are several.
        ``best`` is the probe chosen per outer fold by inner-CV score; ``best["selected"]`` lists the choices.
    """
    start = time.perf_counter()
    loaded = [t if isinstance(t, Task) else load_task(t, seed=seed) for t in tasks]
    if embed_fn is None:
        kinds = ()
    if not kinds and not baselines:
        raise ValueError("nothing to evaluate: give an embed_fn with kinds, or baselines")
    unknown_baselines = set(baselines) - set(BASELINES)
    if unknown_baselines:
        raise ValueError(f"unknown baselines {sorted(unknown_baselines)}; expected some of {tuple(BASELINES)}")
    clash = set(kinds) & set(baselines)
    if clash:
        raise ValueError(f"embedding kinds and baselines share the names {sorted(clash)}")
    unknown = set(probes or {}) - set(PROBES)
    if unknown:
        raise ValueError(f"probes keys must be among {tuple(PROBES)}, got {sorted(unknown)}")
    probes = {task_type: tuple(names) for task_type, names in {**PROBES, **(probes or {})}.items()}

    # Featurise the union of all tasks' molecules once (the solubility tasks share theirs).
    union: dict[str, Chem.Mol] = {}
    for task in loaded:
        union.update((s, m) for s, m in zip(task.smiles, task.mols) if s not in union)
    smiles = list(union)
    row_of = {s: i for i, s in enumerate(smiles)}
    features: dict[str, tuple[np.ndarray, FeatureSpec]] = {}
    for kind in kinds:
        features[kind] = (_embed(embed_fn, smiles, kind), EMBEDDING_SPEC)
    for name in baselines:
        matrix = baseline_features(name, smiles, list(union.values()), progress=progress)
        features[name] = (matrix, BASELINES[name])

    results: dict[str, dict] = {}
    total = sum(len(task.splits) for task in loaded) * len(features)
    with tqdm(total=total, desc="probes", disable=not progress) as bar:
        for task in loaded:
            rows = np.array([row_of[s] for s in task.smiles])
            results[task.name] = {}
            for name, (matrix, spec) in features.items():
                bar.set_postfix_str(f"{task.name} / {name}")
                X = matrix[rows]
                per_fold = []
                for train, test in task.splits:
                    per_fold.append(
                        evaluate_probes(
                            X[train], task.y[train], X[test], task.y[test], task.task_type,
                            probes=probes[task.task_type], impute=spec.impute, scale=spec.scale, clip=spec.clip,
                            seed=seed, n_jobs=n_jobs,
                        )
                    )
                    bar.update()
                results[task.name][name] = _aggregate(per_fold)

    return {
        "tasks": results,
        "excluded": {task.name: [e._asdict() for e in task.excluded] for task in loaded},
        "settings": {
            "seed": seed,
            "n_molecules": {task.name: len(task) for task in loaded},
            "outer_folds": {task.name: len(task.splits) for task in loaded},
            "probes": {task.task_type: list(probes[task.task_type]) for task in loaded},
            "seconds": round(time.perf_counter() - start, 1),
        },
    }
