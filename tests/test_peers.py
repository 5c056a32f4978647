"""The peers' trainers (fastnn.bench.peers) train the net and optimizer they claim: each one
lowers the loss; PyTorch and JAX start from fastnn's weights and end at fastnn's loss,
one model or a stack of them; JAX's scanned epoch is its step-per-call epoch."""
import numpy as np
import pytest

import fastnn.kernels as K
from fastnn import datasets
from fastnn.bench import peers

SIZES = [2, 8, 8, 2]
SEEDS = [0, 1, 2]


def blobs(n=250):
    """n samples: 250 leaves a short last batch of 16."""
    X, y = datasets.blobs(n, spread=0.5, seed=0)
    return X.astype(np.float32), y.astype(np.int64)


def trainers():
    found = {f"fastnn-{name}": (lambda *a, name=name, **k: peers.FastnnTrainer(*a, backend=name, **k))
             for name in K.available_backends()}
    return {**found, **peers.installed()}


def needs(peer):
    if peer not in peers.installed() and peer not in peers.installed_stacks():
        pytest.skip(f"{peer} is not installed")


@pytest.mark.parametrize("optimizer", peers.OPTIMIZERS)
@pytest.mark.parametrize("framework", list(trainers()))
@pytest.mark.parametrize("batch", [1, 32, 256])
def test_every_trainer_lowers_the_loss(framework, optimizer, batch):
    X, y = blobs()
    trainer = trainers()[framework](SIZES, "tanh", batch, optimizer, X, y)
    trainer.run()  # scikit-learn has no weights before its first partial_fit
    first = trainer.loss(X, y)
    trainer.epochs = 3
    trainer.run()
    assert np.isfinite(first) and trainer.loss(X, y) < first
    accuracy = trainer.accuracy(X, y)
    assert 0 <= accuracy <= 1 and accuracy * len(y) == pytest.approx(round(accuracy * len(y)))


@pytest.mark.parametrize("optimizer", peers.OPTIMIZERS)
@pytest.mark.parametrize("peer", [name for name in peers.PEERS if name != "scikit-learn"])
def test_pytorch_and_jax_train_as_fastnn_does(peer, optimizer):
    needs(peer)
    X, y = blobs()
    ours = peers.FastnnTrainer(SIZES, "sigmoid", 16, optimizer, X, y, epochs=3)
    theirs = peers.PEERS[peer][1](SIZES, "sigmoid", 16, optimizer, X, y, epochs=3)
    assert theirs.loss(X, y) == pytest.approx(ours.loss(X, y), rel=1e-6)
    ours.run()
    theirs.run()
    assert theirs.loss(X, y) == pytest.approx(ours.loss(X, y), rel=1e-4)
    assert theirs.accuracy(X, y) == ours.accuracy(X, y)


def test_jax_scanned_epoch_is_the_step_per_call_epoch():
    needs("jax")
    X, y = blobs()
    scanned = peers.JaxTrainer(SIZES, "relu", 16, "adam", X, y, epochs=2)
    stepped = peers.JaxStepTrainer(SIZES, "relu", 16, "adam", X, y, epochs=2)
    scanned.run()
    stepped.run()
    assert scanned.loss(X, y) == pytest.approx(stepped.loss(X, y), rel=1e-6)


@pytest.mark.parametrize("optimizer", peers.OPTIMIZERS)
@pytest.mark.parametrize("peer", list(peers.STACK_PEERS))
def test_stacked_peers_train_each_model_as_its_single_fit(peer, optimizer):
    needs(peer)
    X, y = blobs()
    singles = peers.FastnnSeries(SIZES, "tanh", 16, optimizer, X, y, SEEDS, epochs=2)
    stack = peers.STACK_PEERS[peer][1](SIZES, "tanh", 16, optimizer, X, y, seeds=SEEDS, epochs=2)
    singles.run()
    stack.run()
    losses = stack.loss(X, y)
    assert losses.shape == (len(SEEDS),) and len(set(losses)) == len(SEEDS)  # the seeds differ
    np.testing.assert_allclose(losses, singles.loss(X, y), rtol=1e-4)
    np.testing.assert_array_equal(stack.accuracy(X, y), singles.accuracy(X, y))


def test_fastnn_sweep_trains_each_model_as_its_single_fit():
    X, y = blobs()
    singles = peers.FastnnSeries(SIZES, "tanh", 16, "adam", X, y, SEEDS, epochs=2)
    swept = peers.FastnnSweep(SIZES, "tanh", 16, "adam", X, y, SEEDS, epochs=2)
    singles.run()
    swept.run()
    np.testing.assert_allclose(swept.losses, singles.loss(X, y), rtol=1e-6)


def test_installed_lists_importable_peers():
    assert "scikit-learn" in peers.installed()  # a dependency of fastnn
    assert set(peers.installed()) <= set(peers.PEERS)
    assert set(peers.installed_stacks()) <= set(peers.STACK_PEERS)


def test_every_framework_starts_from_fastnn_initial_weights():
    weights = peers.initial_weights(SIZES, "relu", np.float64, seed=4)
    model = peers.FastnnTrainer(SIZES, "relu", 8, "sgd", *blobs(), seed=4).model
    assert [W.shape for W, _ in weights] == [(2, 8), (8, 8), (8, 2)]
    for (W, b), layer in zip(weights, model.dense_layers):
        np.testing.assert_allclose(W, layer.W, rtol=1e-6)
        np.testing.assert_allclose(b, layer.b)
