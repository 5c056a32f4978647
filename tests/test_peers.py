"""The peers' trainers (fastnn.bench.peers) train the net and optimizer they claim: each one
lowers the loss; PyTorch and JAX start from fastnn's weights and end at fastnn's loss,
one model or a stack of them; JAX's scanned epoch is its step-per-call epoch; fastnn's Stack
trainers train each model as its single fit does."""
import numpy as np
import pytest

import fastnn.kernels as K
from fastnn import datasets
from fastnn.bench import peers
from fastnn.bench import trainers as fastnn_trainers
from fastnn.kernels import gemm

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


@pytest.mark.skipif(gemm.bf16_unsupported() is not None, reason="no bf16 products on this CPU")
def test_the_bf16_trainers_train_in_bf16():
    """fastnn's trainer with precision='bf16' and PyTorch's with its bf16 switch, which it
    sets only while it trains."""
    X, y = blobs()
    ours = peers.FastnnTrainer(SIZES, "tanh", 32, "adam", X, y, epochs=3, precision="bf16")
    plain = peers.FastnnTrainer(SIZES, "tanh", 32, "adam", X, y, epochs=3)
    ours.run()
    plain.run()
    assert ours.loss(X, y) == pytest.approx(plain.loss(X, y), rel=0.05) and ours.loss(X, y) != plain.loss(X, y)
    assert "precision='bf16'" in ours.config
    if "pytorch-1t bf16" in peers.installed_bf16():
        import torch

        theirs = peers.installed_bf16()["pytorch-1t bf16"](SIZES, "tanh", 32, "adam", X, y, epochs=3)
        first = theirs.loss(X, y)
        theirs.run()
        assert theirs.loss(X, y) < first and "fp32_precision='bf16'" in theirs.config
        assert torch.backends.mkldnn.matmul.fp32_precision == "none"


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


def _single_fit(seed, X, y, shuffle_seed, epochs, optimizer="adam", sizes=SIZES, activation="tanh", batch=16):
    model = fastnn_trainers.mlp(sizes, activation=activation, seed=seed)
    return model.fit(X, y, optimizer=fastnn_trainers._fastnn_optimizer(optimizer, None), epochs=epochs, batch_size=batch,
                     seed=shuffle_seed, verbose=0).loss[-1], model


@pytest.mark.parametrize("order", peers.FastnnStack.ORDERS)
def test_fastnn_stack_trains_each_model_as_a_single_fit_in_its_batch_order(order):
    """Shared order: every model shuffles as a fit with seed 0; per seed: model k as a fit
    with seed k. Two runs go on from the first (weights, optimizer state, orders)."""
    X, y = blobs()
    stack = peers.FastnnStack(SIZES, "tanh", 16, "adam", X, y, seeds=SEEDS, backend=K.get_backend().name, order=order)
    stack.run()
    stack.run()
    losses = stack.loss(X, y)
    for k, seed in enumerate(SEEDS):
        _, model = _single_fit(seed, X, y, 0 if order == "shared" else seed, 2)
        assert losses[k] == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-6)
        assert stack.accuracy(X, y)[k] == np.mean(model.predict(X) == y)
    assert len(set(losses)) == len(SEEDS)


def test_fastnn_stack_orders_differ_and_bad_orders_are_refused():
    X, y = blobs()
    shared, per_seed = (peers.FastnnStack(SIZES, "tanh", 16, "sgd", X, y, seeds=SEEDS, order=order,
                                          backend=K.get_backend().name) for order in peers.FastnnStack.ORDERS)
    shared.run()
    per_seed.run()
    assert shared.loss(X, y)[0] == per_seed.loss(X, y)[0]  # seed 0 shuffles alike in both
    assert not np.array_equal(shared.loss(X, y)[1:], per_seed.loss(X, y)[1:])
    with pytest.raises(ValueError, match="order must be one of"):
        peers.FastnnStack(SIZES, "tanh", 16, "sgd", X, y, seeds=SEEDS, order="random")


def test_many_trainers_have_a_stack_per_backend_and_order():
    names = list(peers.many_trainers(["numba", "cython"], with_peers=False))
    assert names == ["fastnn-numba one by one", "fastnn-cython one by one", "fastnn.sweep",
                     "fastnn-numba stack, shared order", "fastnn-numba stack, per seed order",
                     "fastnn-cython stack, shared order", "fastnn-cython stack, per seed order"]
    assert set(peers.many_trainers(["numba"])) - set(peers.many_trainers(["numba"], with_peers=False)) == set(
        peers.installed_stacks())


def test_the_study_as_stacks_trains_the_sweeps_single_fits():
    X, y = blobs(120)
    configurations = [{"sizes": [2, 6, 2], "activation": "relu", "batch": 8, "optimizer": "momentum"},
                      {"sizes": [2, 4, 4, 2], "activation": "sigmoid", "batch": 32, "optimizer": "adam"}]
    backend = K.get_backend().name
    stacks = peers.StudyStacks(configurations, X, y, SEEDS, 2, backend=backend)
    swept = peers.StudySweep(configurations, X, y, SEEDS, 2, backend=backend)
    stacks.run()
    swept.run()
    assert stacks.losses.shape == swept.losses.shape == (2, len(SEEDS))
    np.testing.assert_allclose(stacks.losses, swept.losses, rtol=1e-6)
    spec = configurations[1]
    alone = _single_fit(SEEDS[2], X, y, SEEDS[2], 2, spec["optimizer"], spec["sizes"], spec["activation"], 32)[0]
    assert stacks.losses[1, 2] == pytest.approx(alone, rel=1e-6)



def test_a_fastnn_trainer_of_a_named_provider_installs_it_before_each_run(monkeypatch):
    X, y = blobs()
    trainer = peers.FastnnTrainer(SIZES, "tanh", 32, "adam", X, y, provider="openblas")
    assert "BLAS provider openblas" in trainer.config and trainer.provider.name == "openblas"
    installed = []
    monkeypatch.setattr(gemm, "install", installed.append)
    trainer.run()
    trainer.run()
    assert installed == [trainer.provider] * 2
