import copy
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits, make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnn
from fastnn.sklearn import MLPClassifier, MLPRegressor

# Full-batch float64 gradient descent without shuffling: deterministic enough for
# every scikit-learn check, including weights == repeated samples.
EXACT = dict(dtype="float64", batch_size="full", shuffle=False, alpha=0.0, max_iter=100, random_state=0)
MINI_BATCH_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data":
        "shuffled mini-batches of weighted and of repeated samples differ",
    "check_sample_weight_equivalence_on_sparse_data":
        "shuffled mini-batches of weighted and of repeated samples differ",
    "check_methods_subset_invariance":
        "float32 GEMM results can differ in the last bit with the number of rows",
}


def _expected_failures(estimator):
    return {} if estimator.dtype == "float64" else MINI_BATCH_XFAIL


@parametrize_with_checks([MLPClassifier(**EXACT), MLPRegressor(**EXACT),
                          MLPClassifier(max_iter=100, random_state=0), MLPRegressor(max_iter=100, random_state=0)],
                         expected_failed_checks=_expected_failures)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=200, n_features=8, n_informative=5, n_classes=3, class_sep=2.0,
                               random_state=0)
    return X, y


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, stratify=y, random_state=0)


def small(**params):
    """A small, seeded classifier that never stops early on its own within max_iter."""
    defaults = dict(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=5, random_state=0,
                    n_iter_no_change=1000)
    return MLPClassifier(**{**defaults, **params})


def quiet(estimator, method, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return getattr(estimator, method)(*args, **kwargs)


# --- real learning ---------------------------------------------------------------------------

def test_digits_accuracy(digits):
    X_train, X_test, y_train, y_test = digits
    clf = quiet(MLPClassifier(hidden_layer_sizes=(64,), max_iter=50, random_state=0), "fit", X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.95
    assert clf.model_.dtype == np.float32
    proba = clf.predict_proba(X_test)
    assert proba.dtype == np.float64 and proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X_test))


def test_regression_r2():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (600, 2))
    y = np.sin(X[:, 0]) + 0.5 * X[:, 1] ** 2
    reg = quiet(MLPRegressor(hidden_layer_sizes=(32, 32), learning_rate_init=0.01, max_iter=150, random_state=0),
                "fit", X[:500], y[:500])
    assert reg.score(X[500:], y[500:]) >= 0.95
    assert reg.predict(X[500:]).shape == (100,)


def test_regression_several_outputs():
    X, y = make_regression(n_samples=200, n_features=5, n_targets=3, noise=1.0, random_state=0)
    reg = quiet(MLPRegressor(hidden_layer_sizes=(), learning_rate_init=0.05, max_iter=200, random_state=0),
                "fit", X, y / 100)
    assert reg.predict(X).shape == (200, 3)
    assert reg.score(X, y / 100) >= 0.99


def test_string_labels(blobs):
    X, y = blobs
    names = np.array(["owl", "cat", "dog"])[y]
    clf = quiet(small(max_iter=100), "fit", X, names)
    assert clf.classes_.tolist() == ["cat", "dog", "owl"]
    predicted = clf.predict(X)
    assert predicted.dtype.kind == "U" and (predicted == names).mean() >= 0.9
    # The same model as one fit on the positions of the labels in classes_.
    codes = np.searchsorted(clf.classes_, names)
    by_code = quiet(small(max_iter=100), "fit", X, codes)
    np.testing.assert_array_equal(clf.classes_[by_code.predict(X)], predicted)


def test_float64_and_backend(blobs):
    X, y = blobs
    selected = fastnn.get_backend()
    losses = []
    for backend in fastnn.available_backends():
        clf = quiet(small(dtype="float64", backend=backend), "fit", X, y)
        assert clf.model_.dtype == np.float64
        losses.append(clf.loss_curve_)
    assert fastnn.get_backend() is selected
    np.testing.assert_allclose(losses, np.broadcast_to(losses[0], np.shape(losses)), rtol=1e-6)


# --- scikit-learn tools ----------------------------------------------------------------------

def test_clone_pipeline_grid_search_cross_val(blobs):
    X, y = blobs
    clf = small(alpha=0.01, max_iter=60)
    copy_ = clone(clf)
    assert copy_.get_params() == clf.get_params() and not hasattr(copy_, "model_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipe = make_pipeline(StandardScaler(), clf).fit(X, y)
        assert pipe.score(X, y) >= 0.9
        scores = cross_val_score(make_pipeline(StandardScaler(), clf), X, y, cv=3)
        search = GridSearchCV(clf, {"hidden_layer_sizes": [(4,), (32,)], "learning_rate_init": [1e-3, 1e-2]},
                              cv=3).fit(X, y)
    assert scores.shape == (3,) and scores.mean() >= 0.85
    assert search.best_params_ == {"hidden_layer_sizes": (32,), "learning_rate_init": 1e-2}
    assert search.best_estimator_.n_iter_ == 60


def test_pickle_round_trip_and_keep_training(blobs):
    X, y = blobs
    clf = quiet(small(), "fit", X, y)
    for restored in (pickle.loads(pickle.dumps(clf)), copy.deepcopy(clf)):
        np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
        # The copy's layers must still be views into its flat parameters to keep learning.
        twin = copy.deepcopy(clf)
        before = restored.predict_proba(X)
        restored.partial_fit(X, y)
        twin.partial_fit(X, y)
        assert not np.array_equal(restored.predict_proba(X), before)
        np.testing.assert_array_equal(restored.predict_proba(X), twin.predict_proba(X))


# --- fit, warm_start, partial_fit, max_iter, n_iter_, early_stopping ------------------------

def test_fit_restarts_from_scratch(blobs):
    X, y = blobs
    clf = quiet(small(), "fit", X, y)
    first = list(clf.loss_curve_), clf.predict_proba(X)
    quiet(clf, "partial_fit", X, y)
    quiet(clf, "fit", X, y)
    assert clf.n_iter_ == 5 and clf.t_ == 5 * len(X)
    assert clf.loss_curve_ == first[0]
    np.testing.assert_array_equal(clf.predict_proba(X), first[1])


def test_warm_start_continues_for_max_iter_more_epochs(blobs):
    X, y = blobs
    warm = quiet(small(warm_start=True), "fit", X, y)
    assert warm.n_iter_ == 5
    quiet(warm, "fit", X, y)
    assert warm.n_iter_ == 10 and len(warm.loss_curve_) == 10 and warm.t_ == 10 * len(X)
    # It continues the weights: the loss carries on down instead of starting over.
    assert warm.loss_curve_[5] < warm.loss_curve_[4] < warm.loss_curve_[0]
    # ...and Adam's state: 5 + 5 warm epochs are exactly one run of 10.
    assert warm.model_.optimizer.steps == 10
    once = quiet(small(max_iter=10), "fit", X, y)
    np.testing.assert_array_equal(warm.loss_curve_, once.loss_curve_)
    np.testing.assert_array_equal(warm.predict_proba(X), once.predict_proba(X))


def test_warm_start_applies_new_hyper_parameters(blobs):
    X, y = blobs
    clf = quiet(small(warm_start=True, solver="sgd"), "fit", X, y)
    velocity = clf.model_.optimizer.state["velocity"]
    quiet(clf.set_params(learning_rate_init=0.1, max_iter=2), "fit", X, y)
    assert clf.n_iter_ == 7
    assert clf.model_.optimizer.lr == 0.1 and clf.model_.optimizer.steps == 7
    assert clf.model_.optimizer.state["velocity"] is velocity


def test_partial_fit_is_one_epoch_per_call(blobs):
    X, y = blobs
    clf = small(early_stopping=True, max_iter=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        for i in range(1, 6):
            clf.partial_fit(X, y, classes=[0, 1, 2])
            assert clf.n_iter_ == i and len(clf.loss_curve_) == i and clf.t_ == i * len(X)
    # No validation split under partial_fit: every sample trains.
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.history_.val_loss == [None]
    # Five partial_fit calls are exactly a fit of five epochs (weights, Adam state, shuffling).
    once = quiet(small(), "fit", X, y)
    np.testing.assert_array_equal(clf.loss_curve_, once.loss_curve_)
    np.testing.assert_array_equal(clf.predict_proba(X), once.predict_proba(X))


def test_partial_fit_after_fit_continues(blobs):
    X, y = blobs
    clf = quiet(small(), "fit", X, y)
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 6 and clf.model_.optimizer.steps == 6


def test_tol_stops_and_counts_from_each_call(blobs):
    X, y = blobs
    # With a huge tol only the first epoch of a call counts as an improvement.
    clf = small(tol=1e9, n_iter_no_change=3, max_iter=50, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X, y)
        assert clf.n_iter_ == 4 and clf.history_.stop_reason == "early_stopping"
        clf.fit(X, y)
        assert clf.n_iter_ == 8
    assert clf.best_loss_ == min(clf.loss_curve_)


def test_max_iter_reached_warns(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        clf = small(max_iter=3, n_iter_no_change=10).fit(X, y)
    assert clf.n_iter_ == 3


@pytest.mark.parametrize("n_iter_no_change", [3, 1000])
def test_early_stopping_keeps_the_best_epoch(digits, n_iter_no_change):
    X, y = digits[0], digits[2]
    params = dict(hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=40, early_stopping=True,
                  n_iter_no_change=n_iter_no_change, random_state=0)
    clf = quiet(MLPClassifier(**params), "fit", X, y)
    best = clf.history_.best_epoch
    assert best < clf.n_iter_
    assert clf.history_.stop_reason == ("early_stopping" if n_iter_no_change == 3 else "completed")
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == clf.validation_scores_[best - 1]
    n_train = len(X) - round(0.1 * len(X))
    assert clf.t_ == clf.n_iter_ * n_train
    # The same run stopped at the best epoch ends with the same weights.
    at_best = quiet(MLPClassifier(**{**params, "max_iter": best}), "fit", X, y)
    np.testing.assert_allclose(clf.model_.params, at_best.model_.params, rtol=1e-6, atol=1e-7)


def test_regressor_warm_start_and_partial_fit():
    X, y = make_regression(n_samples=100, n_features=4, random_state=0)
    reg = quiet(MLPRegressor(hidden_layer_sizes=(8,), max_iter=4, random_state=0, warm_start=True), "fit", X, y)
    quiet(reg, "fit", X, y)
    reg.partial_fit(X, y)
    assert reg.n_iter_ == 9 and reg.t_ == 900


# --- batches, penalties and weights ----------------------------------------------------------

@pytest.mark.parametrize("batch_size, steps_per_epoch", [("auto", 1), ("full", 1), (50, 4), (1, 200)])
def test_batch_size(blobs, batch_size, steps_per_epoch):
    X, y = blobs
    clf = quiet(small(batch_size=batch_size, max_iter=2, solver="sgd", alpha=0.5), "fit", X, y)
    assert clf.model_.optimizer.steps == 2 * steps_per_epoch
    assert clf.model_.optimizer.weight_decay == pytest.approx(0.5 / (len(X) // steps_per_epoch))


def test_class_weight_is_sample_weight(blobs):
    X, y = blobs
    by_dict = quiet(small(class_weight={1: 3.0}), "fit", X, y)
    by_weight = quiet(small(), "fit", X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    np.testing.assert_array_equal(by_dict.loss_curve_, by_weight.loss_curve_)
    rows = np.r_[np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:20], np.flatnonzero(y == 2)]
    balanced = quiet(small(class_weight="balanced"), "fit", X[rows], y[rows])
    weighted = quiet(small(), "fit", X[rows], y[rows], sample_weight=compute_sample_weight("balanced", y[rows]))
    np.testing.assert_allclose(balanced.loss_curve_, weighted.loss_curve_, rtol=1e-6)


def test_zero_weight_samples_are_dropped(blobs):
    X, y = blobs
    weight = np.ones(len(y))
    weight[::7] = 0
    weighted = quiet(small(batch_size=1), "fit", X, y, sample_weight=weight)
    dropped = quiet(small(batch_size=1), "fit", X[weight > 0], y[weight > 0])
    assert weighted.t_ == dropped.t_ == 5 * np.count_nonzero(weight)
    np.testing.assert_array_equal(weighted.predict_proba(X), dropped.predict_proba(X))


# --- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("params, error, match", [
    ({"hidden_layer_sizes": (10, 0)}, ValueError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": 2.5}, TypeError, "hidden_layer_sizes"),
    ({"hidden_layer_sizes": "100"}, TypeError, "hidden_layer_sizes"),
    ({"activation": "softmax"}, ValueError, "activation must be one of"),
    ({"solver": "lbfgs"}, ValueError, "solver must be one of"),
    ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init must be a finite number > 0"),
    ({"learning_rate_init": "fast"}, TypeError, "learning_rate_init"),
    ({"max_iter": 0}, ValueError, "max_iter must be an integer >= 1"),
    ({"n_iter_no_change": 0}, ValueError, "n_iter_no_change"),
    ({"alpha": -1.0}, ValueError, "alpha"),
    ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
    ({"momentum": 1.5}, ValueError, "momentum"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": "big"}, ValueError, "batch_size"),
    ({"shuffle": "yes"}, TypeError, "shuffle"),
    ({"dtype": "int32"}, TypeError, "dtype must be float32 or float64"),
    ({"dtype": "fp8"}, TypeError, "dtype must be float32 or float64"),
    ({"backend": "fortran"}, ValueError, "backend must be one of"),
    ({"init": "nope"}, ValueError, "init must be one of"),
    ({"n_threads": 0}, ValueError, "n_threads must be a positive integer or None"),
    ({"class_weight": "some"}, ValueError, "class_weight"),
    ({"class_weight": {7: 1.0}}, ValueError, "class_weight has labels"),
    ({"class_weight": {0: -1.0}}, ValueError, "class_weight values"),
])
def test_bad_parameters(blobs, params, error, match):
    X, y = blobs
    with pytest.raises(error, match=match):
        small(**params).fit(X, y)


@pytest.mark.parametrize("estimator", [fastnn.MLPClassifier, fastnn.MLPRegressor])
def test_n_threads_reaches_fit(blobs, estimator, monkeypatch):
    from fastnn import train

    seen = []
    fit = train.fit
    monkeypatch.setattr(train, "fit", lambda *args, **kwargs: seen.append(kwargs["n_threads"]) or fit(*args, **kwargs))
    X, y = blobs
    for n_threads in (1, 2, None):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            estimator((4,), max_iter=1, n_threads=n_threads, random_state=0).fit(X, y)
    assert seen == [1, 2, None]
    assert estimator(n_threads=2).get_params()["n_threads"] == 2


def test_bad_calls(blobs):
    X, y = blobs
    with pytest.raises(NotFittedError):
        small().predict(X)
    with pytest.raises(ValueError, match="classes must be given on the first call"):
        small().partial_fit(X, y)
    with pytest.raises(ValueError, match=r"labels \[2\] that are not in classes"):
        small().partial_fit(X, y, classes=[0, 1])
    clf = small().partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="differ from the classes"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 8"):
        clf.predict(X[:, :3])
    with pytest.raises(ValueError, match=r"labels \[5\] that are not in classes"):
        quiet(clf.set_params(warm_start=True), "fit", X, np.where(y == 0, 5, y))
    with pytest.raises(ValueError, match="not supported by partial_fit"):
        small(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="sample_weight must not be all zero"):
        small().fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="early_stopping holds out 1 of 20 samples"):
        MLPRegressor(early_stopping=True, validation_fraction=0.05).fit(X[:20], y[:20])
    reg = MLPRegressor(max_iter=2).partial_fit(X, y.astype(float))
    with pytest.raises(ValueError, match="y has 2 outputs"):
        reg.partial_fit(X, np.c_[y, y].astype(float))
