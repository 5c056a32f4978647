"""The parameters of fastnn's scikit-learn estimators: what each means and the checks
fit runs on them."""
import math
import numbers

import numpy as np

from .layers import float_dtype
from .validation import check_precision

ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("sgd", "adam")

# name: (test, what it must be)
_REAL_PARAMS = {
    "alpha": (lambda v: v >= 0, ">= 0"),
    "learning_rate_init": (lambda v: v > 0, "> 0"),
    "tol": (lambda v: v >= 0, ">= 0"),
    "validation_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "momentum": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "beta_1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta_2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "epsilon": (lambda v: v > 0, "> 0"),
}
_INT_PARAMS = ("max_iter", "n_iter_no_change")
_BOOL_PARAMS = ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping")

PARAMETERS = """
    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Width of each hidden layer; () gives a model without hidden layers.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Hidden-layer activation ('logistic' is fastnn's sigmoid).
    solver : {'sgd', 'adam'}, default='adam'
    alpha : float, default=1e-4
        L2 penalty, applied as the optimizer's weight decay alpha / batch_size
        per update: the gradient term scikit-learn adds for its penalty
        alpha / (2 * batch_size) * ||W||^2 on each mini-batch. Unlike
        scikit-learn, the decay also reaches the biases, and loss_curve_ does
        not include the penalty.
    batch_size : 'auto', 'full' or int, default='auto'
        'auto' is min(200, n_samples) as in scikit-learn, 'full' one batch per
        epoch, 1 online SGD. Larger than n_samples: clipped, with a warning.
    learning_rate_init : float, default=1e-3
        Constant learning rate (scikit-learn's learning_rate schedules are
        not offered).
    max_iter : int, default=200
        Epochs per fit call (see the training rules).
    shuffle : bool, default=True
        Draw a new order of the samples every epoch.
    random_state : int, RandomState or None, default=None
        Seeds the initial weights, the validation split and the shuffling.
    tol : float, default=1e-4
    n_iter_no_change : int, default=10
        fit stops when the monitored loss has not improved by more than tol
        for n_iter_no_change consecutive epochs (fastnn.train.EarlyStopping;
        scikit-learn waits one epoch longer).
    verbose : bool, default=False
        Show a progress bar per fit call.
    warm_start : bool, default=False
    momentum : float, default=0.9
        SGD momentum.
    nesterovs_momentum : bool, default=True
        Nesterov momentum for SGD (when momentum > 0).
    early_stopping : bool, default=False
        Hold out validation_fraction of the training data (stratified for
        the classifier) and monitor its loss instead of the training loss.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters (epsilon is added to the bias-corrected sqrt(v), as
        in PyTorch).
    dtype : 'float32' or 'float64', default='float32'
        dtype of the model; X is converted to it once per call.
    backend : str or None, default=None
        fastnn kernel backend used during fit and predict (None: the one
        currently selected).
    init : str, callable or None, default=None
        Weight initializer (None: fastnn.mlp's default for the activation).
    n_threads : int or None, default=None
        Threads fit trains on (None: FASTNN_NUM_THREADS, else fastnn's choice by the
        size of a step and the cores this process may use).
    precision : None or 'bf16', default=None
        'bf16': the matrix products of fit round their operands to bf16 and sum in
        float32 (float32 models on CPUs with AVX512-BF16; see fastnn.fit).
"""

RULES = """
    Training rules
    --------------
    - fit on an unfitted estimator, or with warm_start=False, builds a new
      model from random_state and runs up to max_iter epochs; n_iter_, t_,
      loss_curve_ and validation_scores_ start again from zero.
    - fit with warm_start=True on a fitted estimator continues the current
      weights and optimizer state (Adam's moments, SGD's velocity) for up to
      max_iter MORE epochs; n_iter_, t_, loss_curve_ and validation_scores_
      accumulate. Each fit call judges convergence from its own first epoch,
      draws its own validation split, and hyper-parameters changed with
      set_params (learning rate, alpha...) apply from that call on.
      Architecture parameters (hidden_layer_sizes, activation, init, dtype)
      only take effect when a new model is built.
    - partial_fit runs exactly one epoch over all the X, y it is given and
      adds 1 to n_iter_; it builds the model on the first call and then
      continues it (also after fit), whatever warm_start says. It ignores
      early_stopping, validation_fraction, tol, n_iter_no_change and
      max_iter: no data are held out, it never stops early and never warns
      about convergence (scikit-learn refuses early_stopping=True here).
    - A fit call that stops because the monitored loss stopped improving has
      converged. One that runs all max_iter epochs emits a ConvergenceWarning.
    - With early_stopping the model ends each fit call with the weights of
      the epoch with the lowest validation loss (as scikit-learn, which
      monitors the validation score); without it, with the last weights.
    - Samples with zero weight are dropped before training.
    - A fitted estimator can be pickled; the copy can go on training.
    - A non-finite training loss stops the call with a RuntimeWarning,
      keeping the last finite weights (fastnn.train.fit).

    Attributes
    ----------
    model_ : fastnn.Sequential
        The trained network.
    history_ : fastnn.History
        The record of the last fit or partial_fit call.
    loss_curve_ : list of float
        Training loss of every epoch since the model was built.
    best_loss_ : float
        Lowest value in loss_curve_ (scikit-learn sets it to None under
        early_stopping).
    validation_scores_ : list of float or None
        Validation score (accuracy or R²) of every epoch of fit calls with
        early_stopping since the model was built; None if there was none.
    best_validation_score_ : float or None
        Validation score of the weights kept by the last fit call with
        early_stopping (the epoch of lowest validation loss, which need not
        be the highest score); None without early_stopping.
    n_iter_ : int
        Epochs run since the model was built.
    t_ : int
        Training samples processed since the model was built.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when X had string column names.
"""


def hidden_sizes(value):
    """hidden_layer_sizes as a list of positive ints (an int is one hidden layer)."""
    sizes = [value] if isinstance(value, numbers.Integral) else value
    expected = "a positive int or a sequence of positive ints"
    if isinstance(sizes, str) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"hidden_layer_sizes must be {expected}; got {value!r}")
    sizes = list(sizes)
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
        raise ValueError(f"hidden_layer_sizes must be {expected}; got {value!r}")
    return [int(s) for s in sizes]


def check_params(estimator):
    """TypeError/ValueError naming the first of the estimator's parameters that is not what
    it must be (checked at each fit, as scikit-learn does)."""
    hidden_sizes(estimator.hidden_layer_sizes)
    if estimator.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}; got {estimator.activation!r}")
    if estimator.solver not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}; got {estimator.solver!r}")
    for name, (ok, expected) in _REAL_PARAMS.items():
        value = getattr(estimator, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number {expected}; got {value!r}")
        if not (math.isfinite(value) and ok(value)):
            raise ValueError(f"{name} must be a finite number {expected}; got {value!r}")
    for name in _INT_PARAMS:
        value = getattr(estimator, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    for name in _BOOL_PARAMS:
        if not isinstance(getattr(estimator, name), (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False; got {getattr(estimator, name)!r}")
    batch = estimator.batch_size
    if batch not in ("auto", "full") and (
            isinstance(batch, (bool, str)) or not isinstance(batch, numbers.Integral) or batch < 1):
        raise ValueError(f"batch_size must be 'auto', 'full' or a positive integer; got {batch!r}")
    try:
        dtype = float_dtype(estimator.dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64; got {estimator.dtype!r}") from None
    check_precision(estimator.precision, dtype)
