"""Supervised probes that score a feature set on a train/test split.

Every probe is a scikit-learn ``Pipeline`` (imputation and scaling where the features need them, fitted on
the training data only) inside a ``GridSearchCV`` whose inner folds also come from the training data only.
The same inner folds serve every probe, so their inner scores are comparable and pick the ``best`` probe.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, SVR
from threadpoolctl import threadpool_limits

from .tasks import CLASSIFICATION, REGRESSION

REGRESSION_PROBES = ("ridge", "svr", "random_forest")
CLASSIFICATION_PROBES = ("logistic_regression", "svc", "random_forest")
PROBES = {REGRESSION: REGRESSION_PROBES, CLASSIFICATION: CLASSIFICATION_PROBES}
INNER_FOLDS = 5
N_TREES = 300


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(y_true, float) - np.asarray(y_pred, float)) ** 2)))


def macro_ovr_roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro-averaged one-vs-rest ROC-AUC from per-class scores ``[N, C]`` (column c = class c).

    The scores need not be probabilities: each class's AUC only uses their ranking, which lets SVC's
    ``decision_function`` be used without Platt scaling (an extra internal 5-fold fit).
    """
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    present = [c for c in range(scores.shape[1]) if 0 < np.sum(y_true == c) < len(y_true)]
    if not present:
        return float("nan")  # AUC is undefined when the test set holds a single class
    return float(np.mean([roc_auc_score(y_true == c, scores[:, c]) for c in present]))


class ClipToTrainingRange(TransformerMixin, BaseEstimator):
    """Clip each column to the range seen in training.

    Heavy-tailed descriptors (fragment counts, Ipc) otherwise let one unseen extreme value drive a linear
    or kernel model's prediction far out of range: a single such molecule in an inner validation fold
    turned Ridge's inner RMSE on solubility from 0.7 to 14 and made the search pick the largest alpha.
    """

    def fit(self, X, y=None):
        self.low_, self.high_ = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
        return self

    def transform(self, X):
        return np.clip(X, self.low_, self.high_)


def _estimator(name: str, task_type: str, seed: int) -> tuple[BaseEstimator, dict]:
    """The final estimator of probe ``name`` and its (small) hyperparameter grid."""
    if task_type not in PROBES:
        raise ValueError(f"task_type must be one of {tuple(PROBES)}, got {task_type!r}")
    if task_type == REGRESSION:
        if name == "ridge":
            return Ridge(), {"alpha": np.logspace(-2, 4, 7)}
        if name == "svr":
            return SVR(kernel="rbf"), {"C": [1.0, 10.0, 100.0]}
        if name == "random_forest":
            # max_features="sqrt": sklearn's regression default (all features) costs many times more on
            # 1024-d continuous embeddings, too slow to cross-validate on two shared cores. It costs
            # some accuracy on descriptors (solubility RDKit 2D: 0.625 against 0.580 with all features).
            return RandomForestRegressor(N_TREES, max_features="sqrt", random_state=seed), {}
    else:
        if name == "logistic_regression":
            # newton-cg: much faster than lbfgs here (lbfgs needs hundreds of iterations on the
            # collinear descriptors at large C).
            return LogisticRegression(solver="newton-cg", max_iter=1000), {"C": [0.01, 0.1, 1.0, 10.0]}
        if name == "svc":
            return SVC(kernel="rbf"), {"C": [1.0, 10.0, 100.0]}
        if name == "random_forest":
            return RandomForestClassifier(N_TREES, random_state=seed), {}
    raise ValueError(f"unknown {task_type} probe {name!r}; expected one of {PROBES[task_type]}")


def make_probe(
    name: str, task_type: str, *, impute: bool, scale: bool, clip: bool = False, seed: int = 0, n_jobs: int = 1
) -> GridSearchCV:
    """Probe ``name`` as a ``GridSearchCV`` over a preprocessing ``Pipeline`` with inner-CV model selection.

    ``impute`` fills NaN with training medians, ``clip`` clips columns to their training range and
    ``scale`` standardises them; trees skip clipping and scaling, to which they are invariant.
    """
    estimator, grid = _estimator(name, task_type, seed)
    steps = []
    if impute:
        steps.append(("impute", SimpleImputer(strategy="median")))
    if clip and name != "random_forest":
        steps.append(("clip", ClipToTrainingRange()))
    if scale and name != "random_forest":
        steps.append(("scale", StandardScaler()))
    steps.append(("model", estimator))
    if task_type == REGRESSION:
        inner, scoring = KFold(INNER_FOLDS, shuffle=True, random_state=seed), "neg_root_mean_squared_error"
    else:
        inner, scoring = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed), "accuracy"
    param_grid = {f"model__{key}": list(values) for key, values in grid.items()}
    return GridSearchCV(Pipeline(steps), param_grid, scoring=scoring, cv=inner, n_jobs=n_jobs)


def _test_metrics(search: GridSearchCV, task_type: str, X_test: np.ndarray, y_test: np.ndarray) -> dict[str, float]:
    if task_type == REGRESSION:
        return {"rmse": rmse(y_test, search.predict(X_test))}
    model = search.best_estimator_
    scores = model.predict_proba(X_test) if hasattr(model, "predict_proba") else model.decision_function(X_test)
    if scores.ndim == 1:  # binary decision_function: one column, positive = classes_[1]
        scores = np.column_stack([-scores, scores])
    # A class missing from the training data has no score column: rank it below everything.
    full = np.full((len(X_test), int(max(y_test.max(), model.classes_.max())) + 1), scores.min() - 1.0)
    full[:, model.classes_] = scores
    accuracy = float(accuracy_score(y_test, model.predict(X_test)))
    return {"accuracy": accuracy, "roc_auc": macro_ovr_roc_auc(y_test, full)}


def evaluate_probes(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    task_type: str,
    *,
    probes: tuple[str, ...] | None = None,
    impute: bool = False,
    scale: bool = True,
    clip: bool = False,
    seed: int = 0,
    n_jobs: int = 1,
) -> dict[str, dict]:
    """Fit each probe on the training data and score it on the test data.

    Returns ``{probe: {metric: value}}`` plus ``"best"``: the test metrics of the probe with the best
    inner-CV score, and its name under ``"selected"``. Classification labels must be integers 0..C-1.
    """
    if task_type not in PROBES:
        raise ValueError(f"task_type must be one of {tuple(PROBES)}, got {task_type!r}")
    probes = PROBES[task_type] if probes is None else tuple(probes)
    if not probes:
        raise ValueError("evaluate_probes needs at least one probe")
    results: dict[str, dict] = {}
    inner_scores = {}
    # One BLAS thread: parallelism comes from n_jobs, and multithreaded BLAS on small matrices made the
    # Ridge search many times slower on a shared two-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        for name in probes:
            search = make_probe(name, task_type, impute=impute, scale=scale, clip=clip, seed=seed, n_jobs=n_jobs)
            search.fit(X_train, y_train)
            inner_scores[name] = search.best_score_
            results[name] = _test_metrics(search, task_type, X_test, y_test)
    selected = max(probes, key=lambda name: inner_scores[name])  # ties go to the earlier (simpler) probe
    results["best"] = {**results[selected], "selected": selected}
    return results
