import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import bench, cli
from fastnn import engine as engines

MNIST_DIR = Path(__file__).parents[1].parent / "shared/data/mnist"


def train(capsys, *args):
    """Run ``fastnn train ARGS`` in-process: (exit code, stdout, stderr)."""
    code = cli.main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, err


def accuracy(out):
    return float(re.search(r"^test accuracy (\d\.\d{4})$", out, re.MULTILINE).group(1))


def write_mnist(directory, kind, n):
    """Random MNIST-format IDX files (raw) holding n images."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes()
    labels = (np.arange(n) % 10).astype(np.uint8).tobytes()
    header = [(2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28)),
              (2049).to_bytes(4, "big") + n.to_bytes(4, "big")]
    (directory / f"{kind}-images-idx3-ubyte").write_bytes(header[0] + images)
    (directory / f"{kind}-labels-idx1-ubyte").write_bytes(header[1] + labels)


def test_default_command_trains_digits_accurately(capsys):
    pytest.importorskip("sklearn")
    code, out, err = train(capsys)
    assert code == 0
    assert "digits: 1437 training / 360 test samples, 64 features, 10 classes " \
           "(seeded stratified 80/20 split)" in out
    assert "model 64-64-10 relu, adam lr 0.001, batch size 32, 20 epochs" in out
    assert accuracy(out) >= 0.9
    assert "20/20" in err  # the progress bar


def test_train_digits_reports_accuracy_and_throughput(capsys):
    pytest.importorskip("sklearn")
    code, out, err = train(capsys, "--epochs", "3", "--layers", "32,16", "--quiet")
    assert code == 0 and err == ""
    assert "model 64-32-16-10 relu" in out
    assert 0.5 < accuracy(out) <= 1
    assert re.search(r"^warm-up \(compiles on the first run only\): \d+\.\d\d s$", out, re.MULTILINE)
    assert re.search(r"^training: 4,311 samples in \d+\.\d\d s, [\d,]+ samples/s$", out, re.MULTILINE)


def test_train_circles(capsys):
    code, out, _ = train(capsys, "--dataset", "circles", "--quiet")
    assert code == 0
    assert "circles: 800 training / 200 test samples, 2 features, 2 classes" in out
    assert accuracy(out) >= 0.95


def test_train_xor(capsys):
    # noise 0.1 moves some points across an axis: about 92% is the best possible
    code, out, _ = train(capsys, "--dataset", "xor", "--quiet")
    assert code == 0
    assert accuracy(out) >= 0.85


def test_training_options_reach_the_model(capsys):
    code, out, _ = train(capsys, "--dataset", "circles", "--layers", "8,4", "--activation", "tanh",
                         "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--batch-size", "full",
                         "--epochs", "2", "--backend", "numpy", "--dtype", "float64", "--quiet")
    assert code == 0
    assert "model 2-8-4-2 tanh, sgd lr 0.05 momentum 0.9, batch size full, 2 epochs, numpy backend, " \
           "float64" in out


@pytest.mark.parametrize("backend", fastnn.available_backends())
def test_every_backend_with_online_sgd(capsys, backend):
    code, out, _ = train(capsys, "--dataset", "xor", "--batch-size", "1", "--epochs", "1",
                         "--optimizer", "sgd", "--backend", backend, "--quiet")
    assert code == 0
    assert f"batch size 1, 1 epochs, {backend} backend" in out
    assert "training: 800 samples" in out


@pytest.mark.skipif(not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason=f"the MNIST t10k files are not in {MNIST_DIR}")
def test_train_mnist_t10k(capsys):
    code, out, _ = train(capsys, "--dataset", "mnist", "--data-dir", str(MNIST_DIR), "--epochs", "1",
                         "--batch-size", "64", "--quiet")
    assert code == 0
    assert "mnist: 8000 training / 2000 test samples, 784 features, 10 classes " \
           "(t10k set, first 8000 / last 2000)" in out
    assert accuracy(out) >= 0.85


def test_mnist_uses_the_train_files_when_present(capsys, tmp_path):
    write_mnist(tmp_path, "t10k", 30)
    write_mnist(tmp_path, "train", 60)
    code, out, _ = train(capsys, "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1",
                         "--quiet")
    assert code == 0
    assert "mnist: 60 training / 30 test samples, 784 features, 10 classes (train / t10k files)" in out


def test_mnist_directory_from_the_environment(capsys, tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist", "t10k", 50)
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))
    code, out, _ = train(capsys, "--dataset", "mnist", "--epochs", "1", "--quiet")
    assert code == 0
    assert "mnist: 40 training / 10 test samples" in out


def test_save_writes_the_model(capsys, tmp_path):
    io = pytest.importorskip("fastnn.io")
    path = tmp_path / "circles.npz"
    code, out, _ = train(capsys, "--dataset", "circles", "--epochs", "2", "--save", str(path), "--quiet")
    assert code == 0
    assert f"model saved to {path}" in out
    model = io.load(path)
    assert (model.n_features, model.n_outputs) == (2, 2)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "argument --batch-size: expected an integer >= 1 or 'full'; got '0'"),
    (["--batch-size", "half"], "argument --batch-size"),
    (["--layers", "a,b"], "argument --layers: expected comma-separated integers >= 1"),
    (["--layers", "64,0"], "argument --layers"),
    (["--epochs", "0"], "argument --epochs: expected an integer >= 1"),
    (["--seed", "-1"], "argument --seed: expected an integer >= 0"),
    (["--lr", "0"], "argument --lr: expected a number > 0"),
    (["--lr", "nan"], "argument --lr: expected a finite number"),
    (["--momentum", "-0.5"], "argument --momentum: expected a number >= 0"),
    (["--activation", "softplus"], "argument --activation: invalid choice"),
    (["--dataset", "iris"], "argument --dataset: invalid choice"),
    (["--dtype", "float16"], "argument --dtype: invalid choice"),
    (["--momentum", "0.9"], "--momentum applies to --optimizer sgd only"),
    (["--data-dir", "somewhere"], "--data-dir applies to --dataset mnist only"),
    (["--save", "no/such/dir/model.npz"], "--save: directory 'no/such/dir' does not exist"),
    (["--dropout", "1"], "argument --dropout: expected a number in [0, 1); got '1'"),
    (["--validation-split", "-0.1"], "argument --validation-split: expected a number in [0, 1)"),
    (["--weight-decay", "-1"], "argument --weight-decay: expected a number >= 0"),
    (["--early-stopping", "0"], "argument --early-stopping: expected an integer >= 1"),
    (["--threads", "0"], "argument --threads: expected an integer >= 1"),
    (["--schedule", "linear"], "argument --schedule: invalid choice"),
])
def test_bad_arguments_name_the_flag(capsys, args, message):
    with pytest.raises(SystemExit) as caught:
        cli.main(["train", *args])
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert message in err
    assert "Traceback" not in err


def test_missing_mnist_directory(capsys, tmp_path):
    missing = tmp_path / "nothing-here"
    code, out, err = train(capsys, "--dataset", "mnist", "--data-dir", str(missing))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("fastnn train: error: MNIST 't10k' files not found; looked for:")
    assert str(missing / "mnist" / "t10k-labels-idx1-ubyte.gz") in err and err.endswith(f"(--data-dir {missing})\n")


def test_mnist_without_a_directory_looks_where_bench_looks(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("FASTNN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = train(capsys, "--dataset", "mnist")
    assert code == 2 and err.count("\n") == 1
    assert "../shared/data/mnist/t10k-images-idx3-ubyte" in err and "path=" not in err
    assert "(--data-dir ../shared/data; the default: $FASTNN_DATA, else ../shared/data)" in err
    write_mnist(tmp_path.parent / "shared" / "data" / "mnist", "t10k", 50)
    code, out, _ = train(capsys, "--dataset", "mnist", "--epochs", "1", "--quiet")
    assert code == 0 and "mnist: 40 training / 10 test samples" in out
    assert bench.default_data_dir() == str(Path("..", "shared", "data"))


def test_digits_without_scikit_learn(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    code, _, err = train(capsys, "--quiet")
    assert code == 2
    assert "needs scikit-learn" in err and "Traceback" not in err


def test_truncated_mnist_file(capsys, tmp_path):
    write_mnist(tmp_path, "t10k", 20)
    images = tmp_path / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    code, _, err = train(capsys, "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert code == 2
    assert f"{images} is truncated" in err and "Traceback" not in err


def test_a_good_model_can_be_written_on_the_command_line(capsys, monkeypatch):
    seen = {}
    fit = fastnn.Sequential.fit

    def spy(model, X, y, **options):
        seen.update(options, layers=repr(model))
        return fit(model, X, y, **options)

    monkeypatch.setattr(fastnn.Sequential, "fit", spy)
    code, out, _ = train(capsys, "--layers", "32,16", "--dropout", "0.2", "--weight-decay", "1e-4",
                         "--schedule", "cosine", "--validation-split", "0.1", "--early-stopping", "2",
                         "--threads", "1", "--epochs", "4", "--batch-size", "64", "--quiet")
    assert code == 0
    assert "model 64-32-16-10 relu, adam lr 0.001, dropout 0.2, weight decay 0.0001, cosine decay, " \
           "batch size 64, 4 epochs" in out
    assert re.search(r"^validation accuracy \d\.\d{4} after epoch \d$", out, re.MULTILINE)
    assert seen["layers"].count("Dropout(p=0.2)") == 2 and seen["n_threads"] == 1
    assert seen["validation_split"] == 0.1 and seen["early_stopping"].patience == 2
    optimizer = seen["optimizer"]
    assert optimizer.weight_decay == 1e-4 and optimizer.schedule.total_epochs == 4


def test_train_announces_a_numba_compile_before_the_warm_up(capsys, monkeypatch):
    monkeypatch.setattr(engines, "compiles", lambda run, args: True)
    code, out, err = train(capsys, "--dataset", "xor", "--backend", "numba", "--epochs", "1", "--quiet")
    assert code == 0
    assert err.startswith("fastnn: compiling the Numba engine's mini-batch loop for float32")


def test_a_bad_backend_variable_is_one_line_and_status_2(tmp_path):
    env = dict(os.environ, FASTNN_BACKEND="bogus")
    for command in (["train", "--quiet"], ["config"]):
        result = subprocess.run([sys.executable, "-m", "fastnn", *command], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr == (f"fastnn {command[0]}: error: FASTNN_BACKEND: backend must be one of "
                                 f"{fastnn.available_backends()}; got 'bogus'\n")


def test_demo_and_config_still_work(capsys):
    assert cli.main(["demo", "--batch-size", "4"]) == 0
    assert "one training step" in capsys.readouterr().out
    assert cli.main(["config"]) == 0
    assert capsys.readouterr().out.strip()


def test_python_m_fastnn_train_in_a_fresh_process(tmp_path):
    package_root = str(Path(fastnn.__file__).parents[1])
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    result = subprocess.run([sys.executable, "-m", "fastnn", "train", "--epochs", "1", "--quiet"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "samples/s" in result.stdout
    assert list(tmp_path.iterdir()) == []
