"""The seed study of the MNIST MLP with stacks: 784-64-32-10 (ReLU, Adam 1e-3, batch 128)
on the real digits (first 8,000 train, last 2,000 test), varying one setting at a time:
activation (relu, tanh, sigmoid), batch size (8, 32, 128, 512), first hidden width (16, 64,
128) and optimizer (SGD 0.1, momentum 0.9 with lr 0.01, Adam 1e-3). Each setting is one
fastnn.Stack.fit of 15 models, one per seed (model k initialised and shuffled by seed k),
for 5 epochs. The same study is then run as one fit after another, which gives the same
test accuracies, to compare the wall times. Figures: one box plot of test accuracy over the
15 seeds per study."""
import time

import numpy as np

import fastnn
from fastnn import plot

from common import figure_path, mnist_split

SEEDS, EPOCHS = list(range(15)), 5
BASE = {"activation": "relu", "batch": 128, "width": 64, "optimizer": "adam"}
STUDIES = {"activation": ("relu", "tanh", "sigmoid"), "batch": (8, 32, 128, 512), "width": (16, 64, 128),
           "optimizer": ("sgd", "momentum", "adam")}
TITLES = {"activation": "activation", "batch": "batch size", "width": "first hidden width", "optimizer": "optimizer"}
OPTIMIZERS = {"sgd": lambda: fastnn.SGD(0.1), "momentum": lambda: fastnn.SGD(0.01, momentum=0.9),
              "adam": lambda: fastnn.Adam(1e-3)}


def settings():
    """Every distinct setting of the studies (the base one is shared by all four)."""
    found = {}
    for name, values in STUDIES.items():
        for value in values:
            setting = dict(BASE, **{name: value})
            found[tuple(setting.values())] = setting
    return list(found.values())


def model(setting, seed):
    return fastnn.mlp([784, setting["width"], 32, 10], activation=setting["activation"], seed=seed)


def with_stack(setting, train, test):
    """Test accuracy of each seed's model: one Stack.fit of all 15."""
    stack = fastnn.Stack([model(setting, seed) for seed in SEEDS])
    stack.fit(*train, optimizer=OPTIMIZERS[setting["optimizer"]](), epochs=EPOCHS, batch_size=setting["batch"],
              seed=SEEDS, verbose=0)
    return stack.evaluate(*test)["accuracy"]


def one_by_one(setting, train, test):
    """The same accuracies, one fit per seed after another."""
    accuracies = []
    for seed in SEEDS:
        net = model(setting, seed)
        net.fit(*train, optimizer=OPTIMIZERS[setting["optimizer"]](), epochs=EPOCHS, batch_size=setting["batch"],
                seed=seed, verbose=0)
        accuracies.append(net.evaluate(*test)["accuracy"])
    return np.array(accuracies)


def run_study(train_all, train, test):
    """{setting key: accuracies} of every setting, and the wall seconds."""
    start = time.perf_counter()
    results = {tuple(s.values()): train_all(s, train, test) for s in settings()}
    return results, time.perf_counter() - start


def main():
    start = time.perf_counter()
    train, test = mnist_split()
    fastnn.warmup()
    stacked, stack_seconds = run_study(with_stack, train, test)
    for name, values in STUDIES.items():
        groups = {str(value): stacked[tuple(dict(BASE, **{name: value}).values())] for value in values}
        print(f"{name} (others: {', '.join(f'{k} {v}' for k, v in BASE.items() if k != name)}), "
              f"test accuracy over {len(SEEDS)} seeds, median (min-max):")
        for value, accuracies in groups.items():
            print(f"  {value:>8}: {np.median(accuracies):.4f} ({accuracies.min():.4f}-{accuracies.max():.4f})")
        plot.boxplot(groups, ylabel="test accuracy", title=f"MNIST 784-64-32-10, {len(SEEDS)} seeds: {TITLES[name]}",
                     path=figure_path(f"seed_study_{name}.png"))
    print(f"\n{len(stacked)} settings x {len(SEEDS)} seeds, {EPOCHS} epochs: one Stack.fit per setting "
          f"{stack_seconds:.1f} s", flush=True)
    single, single_seconds = run_study(one_by_one, train, test)
    same = all(np.array_equal(stacked[key], single[key]) for key in stacked)
    print(f"the same study one fit after another: {single_seconds:.1f} s ({single_seconds / stack_seconds:.2f}x); "
          f"the same test accuracies: {same}")
    print(f"total time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
