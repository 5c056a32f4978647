"""Support vector machines beside the MLP: scikit-learn's SVC grid search (linear, poly of
degree 2-5, rbf and sigmoid kernels over C and gamma) and fastnn's MLPClassifier grid
search, both with GridSearchCV on the same folds (one StratifiedKFold object), on the
noisy circles (800 train / 200 test) and on the real MNIST digits. Prints one table:
dataset, model and the configuration the search chose, CV accuracy, test accuracy, the
refit time of that configuration on the training set, and the whole search's time.

To stay near two minutes on two cores the digits search runs on the first 4,000 of the
8,000 training digits with 3 folds and a smaller grid (an SVC fit on all 8,000 takes
seconds per configuration and fold); the chosen configuration is then refit on all 8,000
and tested on the 2,000 test digits."""
import time
import warnings

from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import SVC

import fastnn
from fastnn import datasets

from common import mnist_split

CIRCLES_SVC = {
    "linear": {"C": [0.1, 1, 10]},
    "poly": {"degree": [2, 3, 4, 5], "C": [0.1, 1, 10], "gamma": ["scale", 1.0]},
    "rbf": {"C": [0.1, 1, 10, 100], "gamma": ["scale", 0.1, 1.0, 10.0]},
    "sigmoid": {"C": [0.1, 1, 10], "gamma": ["scale", 0.1, 1.0]},
}
CIRCLES_MLP = {"hidden_layer_sizes": [(8,), (32,), (32, 32)], "activation": ["tanh", "relu"],
               "learning_rate_init": [1e-3, 1e-2]}
DIGITS_SVC = {
    "linear": {"C": [0.01, 1]},
    "poly": {"degree": [2, 3, 4, 5], "C": [1, 10], "gamma": ["scale"]},
    "rbf": {"C": [1, 10], "gamma": ["scale", 0.01]},
    "sigmoid": {"C": [1, 10], "gamma": ["scale", 0.001]},
}
DIGITS_MLP = {"hidden_layer_sizes": [(64,), (256,), (256, 128)], "learning_rate_init": [1e-3, 3e-3]}


def searches(svc_grids, mlp_grid, mlp_fixed):
    """(name, estimator, grid) of every search: one SVC search per kernel, then the MLP."""
    for kernel, grid in svc_grids.items():
        yield f"SVC {kernel}", SVC(kernel=kernel), grid
    yield "fastnn MLP", fastnn.MLPClassifier(random_state=0, **mlp_fixed), mlp_grid


def search(estimator, grid, cv, X_search, y_search, X_train, y_train, X_test, y_test):
    """Grid search on X_search with cv, then the chosen configuration refit on X_train and
    scored on X_test: (params, CV accuracy, test accuracy, refit seconds, search seconds)."""
    start = time.perf_counter()
    grid_search = GridSearchCV(estimator, grid, cv=cv, scoring="accuracy", refit=False).fit(X_search, y_search)
    searched = time.perf_counter() - start
    model = clone(estimator).set_params(**grid_search.best_params_)
    start = time.perf_counter()
    model.fit(X_train, y_train)
    fitted = time.perf_counter() - start
    return (grid_search.best_params_, grid_search.best_score_, model.score(X_test, y_test), fitted, searched,
            len(grid_search.cv_results_["params"]))


def describe(params):
    return ", ".join(f"{name}={value}" for name, value in sorted(params.items()))


def main():
    (X_digits, y_digits), (X_digits_test, y_digits_test) = mnist_split()
    X, y = datasets.circles(1000, noise=0.15, factor=0.5, seed=0)
    studies = [
        ("circles", CIRCLES_SVC, CIRCLES_MLP, {"max_iter": 200, "batch_size": 32},
         StratifiedKFold(5, shuffle=True, random_state=0), (X[:800], y[:800]), (X[:800], y[:800]), (X[800:], y[800:])),
        ("digits", DIGITS_SVC, DIGITS_MLP, {"max_iter": 20, "batch_size": 128},
         StratifiedKFold(3, shuffle=True, random_state=0), (X_digits[:4000], y_digits[:4000]),
         (X_digits, y_digits), (X_digits_test, y_digits_test)),
    ]
    rows = []
    for dataset, svc_grids, mlp_grid, mlp_fixed, cv, searched_on, train_on, test_on in studies:
        for name, estimator, grid in searches(svc_grids, mlp_grid, mlp_fixed):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                params, cv_accuracy, test_accuracy, fitted, searched, configs = search(
                    estimator, grid, cv, *searched_on, *train_on, *test_on)
            rows.append((dataset, f"{name}: {describe(params)}", cv_accuracy, test_accuracy, fitted, searched, configs))
            print(f"{dataset} {name}: {configs} configurations searched in {searched:.1f} s", flush=True)
    width = max(len(row[1]) for row in rows)
    print(f"\n{'dataset':<8} {'model: chosen configuration':<{width}} {'CV acc':>7} {'test acc':>8} "
          f"{'fit s':>6} {'search s':>8} {'configs':>7}")
    for dataset, model, cv_accuracy, test_accuracy, fitted, searched, configs in rows:
        print(f"{dataset:<8} {model:<{width}} {cv_accuracy:>7.4f} {test_accuracy:>8.4f} {fitted:>6.2f} "
              f"{searched:>8.1f} {configs:>7}")


if __name__ == "__main__":
    main()
