"""The peers' trainers (fastnn.peers) train the net and optimizer they claim: each one
lowers the loss, and PyTorch and JAX started from fastnn's weights end at fastnn's loss."""
import numpy as np
import pytest

import fastnn.kernels as K
from fastnn import datasets, peers

SIZES = [2, 8, 8, 2]


def blobs(n=256):
    X, y = datasets.blobs(n, spread=0.5, seed=0)
    return X.astype(np.float32), y.astype(np.int64)


def trainers():
    found = {f"fastnn-{name}": (lambda *a, name=name: peers.FastnnTrainer(*a, backend=name))
             for name in K.available_backends()}
    return {**found, **peers.installed()}


@pytest.mark.parametrize("optimizer", peers.OPTIMIZERS)
@pytest.mark.parametrize("framework", list(trainers()))
@pytest.mark.parametrize("batch", [1, 32, 256])
def test_every_trainer_lowers_the_loss(framework, optimizer, batch):
    X, y = blobs()
    trainer = trainers()[framework](SIZES, "tanh", batch, optimizer, X, y)
    trainer.run()  # scikit-learn has no weights before its first partial_fit
    first = trainer.loss(X, y)
    for _ in range(3):
        trainer.run()
    assert np.isfinite(first) and trainer.loss(X, y) < first


def copy_fastnn_weights(trainer, model):
    """Give a PyTorch or JAX trainer fastnn's initial weights."""
    dense = model.dense_layers
    if isinstance(trainer, peers.TorchTrainer):
        import torch

        with torch.no_grad():
            linear = [m for m in trainer.model if isinstance(m, torch.nn.Linear)]
            for layer, d in zip(linear, dense):
                layer.weight.copy_(torch.from_numpy(d.W.T.copy()))
                layer.bias.copy_(torch.from_numpy(d.b.copy()))
        return
    import jax.numpy as jnp

    params = [(jnp.asarray(d.W), jnp.asarray(d.b)) for d in dense]
    state = trainer.state
    trainer.state = params if isinstance(state, list) else (params, *state[1:])


@pytest.mark.parametrize("optimizer", peers.OPTIMIZERS)
@pytest.mark.parametrize("peer", ["pytorch", "jax"])
def test_pytorch_and_jax_train_as_fastnn_does(peer, optimizer):
    if peer not in peers.installed():
        pytest.skip(f"{peer} is not installed")
    X, y = blobs(64)
    ours = peers.FastnnTrainer(SIZES, "sigmoid", 16, optimizer, X, y)
    theirs = peers.installed()[peer](SIZES, "sigmoid", 16, optimizer, X, y)
    copy_fastnn_weights(theirs, ours.model)
    assert theirs.loss(X, y) == pytest.approx(ours.loss(X, y), rel=1e-5)
    for _ in range(3):
        ours.run()
        theirs.run()
    assert theirs.loss(X, y) == pytest.approx(ours.loss(X, y), rel=1e-4)


def test_installed_lists_importable_peers():
    assert "scikit-learn" in peers.installed()  # a dependency of fastnn
    assert set(peers.installed()) <= set(peers.PEERS)
