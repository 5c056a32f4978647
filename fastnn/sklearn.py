"""scikit-learn estimators: MLPClassifier and MLPRegressor trained by fastnn.

They take scikit-learn's parameter names, work with clone, Pipeline,
GridSearchCV and cross_val_score, and train through fastnn.train.fit: a fit
call is one run of max_iter epochs, a partial_fit call a run of one epoch.
Requires scikit-learn >= 1.6.
"""
import contextlib
import json
import warnings

import numpy as np
import scipy.sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from . import train
from .io import generator_from_state, generator_state, load_as, save
from .kernels import use_backend
from .sparse import SparseRows
from .layers import float_dtype
from .model import mlp
from .optim import SGD, Adam
from .sklearn_params import ACTIVATIONS, PARAMETERS, RULES, check_params, hidden_sizes
from .validation import check_sample_weight

# The fitted attributes a saved estimator keeps (not history_).
_SAVED_FITTED = ("n_features_in_", "n_iter_", "t_", "loss_curve_", "best_loss_", "validation_scores_",
                 "best_validation_score_")

class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share; subclasses define the targets and the loss."""

    _loss = None
    _stratify = False
    _y_checks = {}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype="float32", backend=None,
                 init=None, n_threads=None, precision=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.backend = backend
        self.init = init
        self.n_threads = n_threads
        self.precision = precision

    def fit(self, X, y, sample_weight=None):
        """Train on X, y for up to max_iter epochs (see the training rules); returns self."""
        return self._train(X, y, sample_weight, partial=False)

    def save(self, path):
        """Write the fitted estimator to path (atomically); fastnn.load(path) gives it back."""
        save(self, path)

    @classmethod
    def load(cls, path):
        """The estimator of this class saved at path (fastnn.load); TypeError when the file
        holds another kind of model."""
        return load_as(cls, path)

    def _save_state(self):
        """(model_, state, arrays) for fastnn.io to store: the network, the JSON-ready
        parameters, fitted attributes and generator state, and the estimator's own arrays,
        from which _restore_state gives this fitted estimator back."""
        if "model_" not in self.__dict__:
            raise ValueError(f"this {type(self).__name__} is not fitted yet: there is no model to save")
        params = self.get_params()
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise ValueError(f"cannot save {type(self).__name__} parameters {params}: only plain values "
                             f"(numbers, strings, None, tuples) can be stored ({error}); pickle it instead") from None
        state = {"params": params, "fitted": {name: getattr(self, name) for name in _SAVED_FITTED},
                 "generator": generator_state(self._rng)}
        return self.model_, state, {}

    @classmethod
    def _restore_state(cls, model, state, arrays):
        """The fitted estimator that _save_state gave state and arrays of, around model."""
        params = {name: tuple(value) if isinstance(value, list) else value for name, value in state["params"].items()}
        estimator = cls(**params)
        for name in _SAVED_FITTED:
            setattr(estimator, name, state["fitted"][name])
        estimator._rng = generator_from_state(state["generator"])
        estimator.model_ = model
        return estimator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # scipy.sparse X, trained without densifying it (fastnn.sparse)
        return tags

    def _backend(self):
        return contextlib.nullcontext() if self.backend is None else use_backend(self.backend)

    def _train(self, X, y, sample_weight, partial, classes=None):
        check_params(self)
        build = "model_" not in self.__dict__ or not (partial or self.warm_start)
        dtype = float_dtype(self.dtype) if build else self.model_.dtype
        X, y = validate_data(self, X, y, reset=build, dtype=dtype, accept_sparse=True, **self._y_checks)
        if scipy.sparse.issparse(X):
            X = SparseRows.from_scipy(X, dtype)
        y, n_outputs = self._targets(y, build, classes)
        weight = self._sample_weight(y, sample_weight, len(X), partial)
        if weight is not None:
            keep = weight > 0
            X, y, weight = X[keep], y[keep], weight[keep]
        with self._backend():
            if build:
                self._build(X.shape[1], n_outputs)
            validation = None
            if self.early_stopping and not partial:
                (X, y, weight), validation = self._split(X, y, weight)
            batch = self._batch_size(len(X))
            stopper = None if partial else train.EarlyStopping(
                patience=self.n_iter_no_change, min_delta=self.tol, restore_best_weights=self.early_stopping)
            history = train.fit(self.model_, X, y, loss=self._loss, optimizer=self._optimizer(min(batch, len(X))),
                                epochs=1 if partial else self.max_iter, batch_size=batch, shuffle=self.shuffle,
                                seed=self._rng, sample_weight=weight, validation_data=validation,
                                early_stopping=stopper, verbose=int(bool(self.verbose)),
                                n_threads=self.n_threads, precision=self.precision)
        self._record(history, len(X), stopper if validation is not None else None)
        if not partial and history.stop_reason == "completed":
            warnings.warn(f"maximum iterations (max_iter={self.max_iter}) reached and the optimization "
                          "has not converged yet", ConvergenceWarning, stacklevel=3)
        return self

    def _sample_weight(self, y, sample_weight, n_samples, partial):
        """The weights of the samples as a float64 array, or None."""
        return check_sample_weight(sample_weight, n_samples, np.float64)

    def _build(self, n_features, n_outputs):
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        self._rng = np.random.default_rng(seed)
        sizes = [n_features, *hidden_sizes(self.hidden_layer_sizes), n_outputs]
        self.model_ = mlp(sizes, activation=ACTIVATIONS[self.activation], init=self.init,
                          dtype=self.dtype, seed=self._rng)
        self.n_iter_ = self.t_ = 0
        self.loss_curve_ = []
        self.best_loss_ = self.validation_scores_ = self.best_validation_score_ = None

    def _split(self, X, y, weight):
        """(training arrays, validation arrays) with validation_fraction held out."""
        rows = np.arange(len(X))
        train_rows, val_rows = train_test_split(rows, test_size=self.validation_fraction,
                                                random_state=int(self._rng.integers(2 ** 31)),
                                                stratify=y if self._stratify else None)
        if len(val_rows) < 2:
            raise ValueError(f"early_stopping holds out {len(val_rows)} of {len(X)} samples for validation; "
                             "it needs at least 2: increase validation_fraction or the data")
        train_rows, val_rows = np.sort(train_rows), np.sort(val_rows)
        pick = (lambda rows: (X[rows], y[rows], None if weight is None else weight[rows]))
        return pick(train_rows), pick(val_rows)

    def _batch_size(self, n_samples):
        """The batch size for fastnn.train.fit; an int above n_samples is left for it to clip."""
        if self.batch_size == "auto":
            return min(200, n_samples)
        return n_samples if self.batch_size == "full" else self.batch_size

    def _optimizer(self, batch):
        """A new optimizer with the current hyper-parameters (weight decay alpha / batch)
        and the model's optimizer state."""
        decay = self.alpha / batch
        if self.solver == "sgd":
            optimizer = SGD(lr=self.learning_rate_init, momentum=self.momentum,
                            nesterov=bool(self.nesterovs_momentum) and self.momentum > 0, weight_decay=decay)
        else:
            optimizer = Adam(lr=self.learning_rate_init, betas=(self.beta_1, self.beta_2), eps=self.epsilon,
                             weight_decay=decay)
        previous = self.model_.optimizer
        if type(previous) is type(optimizer):
            optimizer.state, optimizer.steps = previous.state, previous.steps
        return optimizer

    def _record(self, history, n_train, stopper):
        """Update the fitted attributes after a training run; stopper is given under early stopping."""
        epochs = len(history)
        self.n_iter_ += epochs
        self.t_ += epochs * n_train
        self.loss_curve_ += history.loss
        self.best_loss_ = min(self.loss_curve_, default=None)
        self.history_ = history
        if stopper is not None:
            self.validation_scores_ = (self.validation_scores_ or []) + history.val_metric
            if stopper.best_epoch is not None:
                self.best_validation_score_ = history.val_metric[stopper.best_epoch - 1]

    def _outputs(self, X):
        """The model's raw outputs for X, in float64."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.model_.dtype, accept_sparse=True)
        with self._backend():
            return self.model_.outputs(X).astype(np.float64)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = """Multilayer perceptron classifier (softmax cross-entropy) with scikit-learn's API.

    Labels may be of any sortable type (ints, strings...); classes_ holds them
    sorted and predict returns them. Binary problems use two softmax outputs.
    Multilabel targets are not supported.
""" + PARAMETERS + """    class_weight : dict, 'balanced' or None, default=None
        Weights per class, multiplied into sample_weight. 'balanced' uses
        n_samples / (n_classes_present * count(class)) of each fit call's y;
        partial_fit accepts only a dict (compute 'balanced' weights once,
        e.g. with sklearn.utils.class_weight.compute_class_weight).
""" + RULES + """    classes_ : ndarray
        The labels, sorted.
"""

    _loss = "softmax_cross_entropy"
    _stratify = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate_init=0.001, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, dtype="float32", backend=None,
                 init=None, n_threads=None, precision=None, class_weight=None):
        super().__init__(
            hidden_layer_sizes, activation, solver=solver, alpha=alpha, batch_size=batch_size,
            learning_rate_init=learning_rate_init, max_iter=max_iter, shuffle=shuffle,
            random_state=random_state, tol=tol, verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
            n_iter_no_change=n_iter_no_change, dtype=dtype, backend=backend, init=init, n_threads=n_threads,
            precision=precision)
        self.class_weight = class_weight

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over X, y (see the training rules); classes (every possible label) is
        required on the first call. Returns self."""
        if classes is None and "model_" not in self.__dict__:
            raise ValueError("classes must be given on the first call to partial_fit: "
                             "the array of every label y may contain")
        return self._train(X, y, sample_weight, partial=True, classes=classes)

    def _save_state(self):
        model, state, arrays = super()._save_state()
        if self.classes_.dtype.kind not in "biufU":
            raise ValueError(f"cannot save classes_ of dtype {self.classes_.dtype}: only numbers and "
                             "strings can be stored; pickle the estimator instead")
        return model, state, {**arrays, "classes": self.classes_}

    @classmethod
    def _restore_state(cls, model, state, arrays):
        estimator = super()._restore_state(model, state, arrays)
        estimator.classes_ = arrays["classes"]
        return estimator

    def predict(self, X):
        """The most probable label of each row of X."""
        outputs = self._outputs(X)
        return self.classes_[outputs.argmax(axis=1)]

    def predict_proba(self, X):
        """Class probabilities (float64), one column per label of classes_."""
        outputs = self._outputs(X)
        with self._backend():
            return self.model_.loss.transform(outputs)

    def _targets(self, y, build, classes):
        """y as indices into classes_ (set when the model is built), and the number of outputs."""
        check_classification_targets(y)
        if classes is not None:
            classes = np.unique(classes)
            if not build and not np.array_equal(classes, self.classes_):
                raise ValueError(f"classes {classes.tolist()} differ from the classes of the fitted model "
                                 f"{self.classes_.tolist()}")
        if build:
            self.classes_ = np.unique(y) if classes is None else classes
        unknown = np.setdiff1d(y, self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels {unknown.tolist()} that are not in classes "
                             f"{self.classes_.tolist()}")
        return np.searchsorted(self.classes_, y), len(self.classes_)

    def _sample_weight(self, y, sample_weight, n_samples, partial):
        weight = super()._sample_weight(y, sample_weight, n_samples, partial)
        if self.class_weight is None:
            return weight
        weight = self._class_weights(y, partial)[y] * (1.0 if weight is None else weight)
        if not weight.any():
            raise ValueError("class_weight and sample_weight give every sample zero weight")
        return weight

    def _class_weights(self, y, partial):
        """One weight per entry of classes_."""
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            if partial:
                raise ValueError("class_weight='balanced' is not supported by partial_fit; pass a dict of "
                                 "weights computed once, e.g. with compute_class_weight('balanced', ...)")
            counts = np.bincount(y, minlength=len(self.classes_)).astype(np.float64)
            present = counts > 0
            weights = np.ones(len(self.classes_))
            weights[present] = len(y) / (present.sum() * counts[present])
            return weights
        if not isinstance(self.class_weight, dict):
            raise ValueError(f"class_weight must be a dict, 'balanced' or None; got {self.class_weight!r}")
        known = set(self.classes_.tolist())
        unknown = [label for label in self.class_weight if label not in known]
        if unknown:
            raise ValueError(f"class_weight has labels {unknown} that are not in classes {self.classes_.tolist()}")
        weights = np.array([self.class_weight.get(label, 1.0) for label in self.classes_.tolist()], np.float64)
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError(f"class_weight values must be finite and >= 0; got {self.class_weight!r}")
        return weights


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = """Multilayer perceptron regressor (mean squared error) with scikit-learn's API.

    y may be 1-D or 2-D (one output per column); predict returns 1-D for a
    single output. The loss in loss_curve_ is the mean squared error
    (scikit-learn reports half of it).
""" + PARAMETERS + RULES

    _loss = "mse"
    _y_checks = {"multi_output": True, "y_numeric": True}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over X, y (see the training rules). Returns self."""
        return self._train(X, y, sample_weight, partial=True)

    def predict(self, X):
        """Predicted values: shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        outputs = self._outputs(X)
        return outputs.ravel() if outputs.shape[1] == 1 else outputs

    def _targets(self, y, build, classes):
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if not build and n_outputs != self.model_.n_outputs:
            raise ValueError(f"y has {n_outputs} outputs (columns) but the fitted model has "
                             f"{self.model_.n_outputs}")
        return y, n_outputs
