"""The compiled code's interface, in plain Python: codes, the layer table, the
hyper-parameter record and the argument bundles of the engine's entry points.

Everything that crosses from fastnn/ into compiled code (kernels and both
engines) is named here once. The Cython declarations (kernels/abi.pxd) and the
Numba engine use these values; tests/kernels/test_abi.py holds the Cython
enums and struct to them. Importing this module loads no compiled code.

An engine entry point ``run_batches(model, data, work, run)`` (``run_online``
alike) trains a stack of K models of one layout (K >= 1; a single fit is K = 1),
with P parameters each. It takes four bundles:

Model   params, grads       (K, P): row k is model k's flat parameter and gradient buffer
        state_a, state_b    (K, P) optimizer state: SGD's velocity (state_b (K, 0)), Adam's m and v
        layers              int64 (n_layers, len(LAYER_COLUMNS)): the layer table
        alphas              float64 (n_layers,): leaky_relu slopes
        hyper               HYPER record array (K,): model k's optimizer hyper-parameters
        steps               int64 (K,), in and out: model k's optimizer steps before the
                            call (Adam's bias correction); after it, the steps taken by then
        active              int64 (K,): 1 trains model k; 0 leaves every array of model k
                            as it is (a model stopped early or diverged before this call)
Data    X                   (n, n_in) training inputs
        labels              int64 (n,) for CROSS_ENTROPY, else empty
        targets             (n, n_out) for the other losses, else (0, n_out)
        weights             (n,) sample weights, or empty
        values, indices,    a sparse X's CSR arrays (kernels/reference.py), X then (0, n_in);
        indptr              for a dense X, empty: indptr (n + 1,) or (0,)
        orders              int64 (n_orders, n_epochs, n): each epoch's sample order;
                            n_orders 0 trains in order, 1 gives every model orders[0],
                            K gives model k orders[k]
Work    acts, deltas        flat workspaces of batch * (n_in + sum of n_out) entries: the
                            batch's inputs, then each layer's (batch, n_out) outputs;
                            deltas holds their gradients alike (one model's: the models
                            use them in turn)
        twork, wwork, lwork (batch, n_out), (batch,), int64 (batch,): the batch's
                            targets, sample weights and labels gathered in epoch order
        svalues, sindices,  the batch's rows of a sparse X gathered in epoch order (CSR, the
        sindptr             values of up to batch * the most entries of a row; sindptr (batch + 1,));
                            empty for a dense X
        backup              (K, 3, P), out: params, state_a, state_b at model k's last epoch start
        stats               float64 (K, n_epochs, 2), out: per model and epoch, the sums
                            over batches of (mean loss, metric) times the batch's rows
        update_losses       float64 (K, n_epochs, n_batches), out: each update's batch loss
                            (the mean over its rows, before its step), n_batches the
                            updates of an epoch; (K, 0, 0) records none
        done                int64 (K,), out: the epochs model k completed (0 if inactive)
        failed_batch        int64 (K,), out: where done[k] < n_epochs, the batch of epoch
                            done[k] whose loss stopped model k
        failed_loss         float64 (K,), out: that loss
Run     optimizer, loss     codes below
        n_epochs, batch     epochs to run and the batch size
        threads             the engine's own threads (the Cython engine's; Numba runs one)
        sparse_product      for a sparse X: 1 multiplies the first layer by the csr_ kernels,
                            0 densifies each batch into acts and multiplies by BLAS;
                            the online loops (batch 1) take a dense X only

The models train one after another, each exactly as it would train alone: model
k's numbers do not depend on the other models. When a batch's loss is not finite
or exceeds reference.LOSS_LIMIT, that model stops before the batch's update
(done, failed_batch and failed_loss say where) and the next model goes on. The
entry points return None.
"""
from collections import namedtuple

import numpy as np

IDENTITY, RELU, LEAKY_RELU, SIGMOID, TANH, STEP = range(6)
ACTIVATIONS = {
    "identity": IDENTITY,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "step": STEP,
}
# CROSS_ENTROPY takes integer labels, CROSS_ENTROPY_SOFT one-hot or soft target rows.
CROSS_ENTROPY, CROSS_ENTROPY_SOFT, MSE, BCE = range(4)
SGD, ADAM = range(2)

# The layer table: one row per Dense layer, these columns.
LAYER_COLUMNS = ("w_offset", "n_in", "n_out", "activation", "in_offset", "out_offset")
W_OFFSET, N_IN, N_OUT, ACTIVATION, IN_OFFSET, OUT_OFFSET = range(len(LAYER_COLUMNS))

# One optimizer's hyper-parameters: SGD reads lr, momentum, nesterov, weight_decay;
# Adam lr, beta1, beta2, eps, weight_decay, decoupled (AdamW); both clip_norm (0: none).
HYPER = np.dtype([
    ("lr", np.float64),
    ("momentum", np.float64),
    ("weight_decay", np.float64),
    ("beta1", np.float64),
    ("beta2", np.float64),
    ("eps", np.float64),
    ("clip_norm", np.float64),
    ("nesterov", np.int64),
    ("decoupled", np.int64),
])

Model = namedtuple("Model", "params grads state_a state_b layers alphas hyper steps active")
Data = namedtuple("Data", "X labels targets weights values indices indptr orders")
Work = namedtuple("Work", "acts deltas twork wwork lwork svalues sindices sindptr backup stats update_losses done "
                          "failed_batch failed_loss")
Run = namedtuple("Run", "optimizer loss n_epochs batch threads sparse_product")
