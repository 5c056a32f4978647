"""``fastnn bench``: run every case of a plan, with numbered progress lines, and write
results.json and the plots."""
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import blas
from .. import engine as engines
from .. import kernels
from ..atomic import replacing
from ..threads import OWN_TWO_THREAD_FLOPS, step_flops
from . import peers
from .cases import (NETS, MODE_SAMPLES, TARGET_ACCURACY, GRADIENT_BATCH, GradientCase, KernelCase, ModeCase,
                    gemm_rate, gradient_summary, kernel_results, measure_many, measure_study, mnist_split, mode_name,
                    mode_results, numba_first_step, one_blas_thread, ordered_digits, study_name, time_to_accuracy)
from .machine import machine_record
from .plans import PLANS
from .timing import SPIN_PAUSE, measure


class Progress:
    """Numbered progress lines on a stream: '[3/40] kernels dense_forward ...: result'."""

    def __init__(self, total, stream=None):
        self.total, self.done, self.stream = total, 0, stream

    def __call__(self, text):
        self.done += 1
        if self.stream is not None:
            print(f"[{self.done}/{self.total}] {text}", file=self.stream, flush=True)


def _plan_size(plan, backends, with_accuracy):
    """The number of progress lines a run of the plan prints."""
    return (1 + len(plan["blas_cases"]) + len(plan["kernel_shapes"]) * len(kernels.KERNELS) + len(plan["nets"]) * len(plan["modes"])
            + (len(plan["modes"]) if with_accuracy else 0) + len(plan["widths"])
            + len(plan.get("many_cases", ())) + (1 if plan.get("study") else 0)
            + (1 if plan["cold_start"] and "numba" in backends else 0))


def _has_digits(data_dir):
    """None when the ordered MNIST digits load, else why not."""
    try:
        ordered_digits(data_dir)
    except (FileNotFoundError, ValueError) as error:
        return f"MNIST digits not found: {error}"
    return None


def _many_models(plan, backends, with_peers, data_dir, progress):
    """The many-models cases and the configuration study of a plan, on the backends with an
    engine: {"cases": [one row per case and trainer], "study": {...} or None, "skipped": [...]}."""
    engine_backends = [name for name in backends if engines.engine_module(name) is not None]
    found = {"cases": [], "study": None, "skipped": []}
    seeds = range(plan.get("many_seeds", 15))
    missing = _has_digits(data_dir) if plan.get("study") or any(
        case[-1] == "digits" for case in plan.get("many_cases", ())) else None
    for case in plan.get("many_cases", ()):
        if not engine_backends or (case[-1] == "digits" and missing):
            found["skipped"].append(f"{case[0]}: {missing or 'no backend with an engine'}")
            progress(f"many models {case[0]}: skipped")
            continue
        trainers = peers.many_trainers(engine_backends, with_peers)
        rates, seconds = measure_many(case, trainers, plan["many_repeats"], data_dir=data_dir, seeds=seeds)
        found["cases"] += [{"case": case[0], "framework": name, "seeds": len(seeds), "seconds": seconds[name],
                            "model_updates_per_second": rates[name]} for name in trainers]
        progress(f"many models {case[0]}: " + ", ".join(f"{n} {s:.2f} s" for n, s in seconds.items()))
    study = plan.get("study")
    if study and (missing or not engine_backends):
        found["skipped"].append(f"study {study}: {missing or 'no backend with an engine'}")
        progress(f"configuration study {study}: skipped")
    elif study:
        seconds = measure_study(study, peers.study_trainers(engine_backends[-1]), plan["many_repeats"],
                                data_dir=data_dir, seeds=seeds)
        found["study"] = {"study": study, "name": study_name(study, len(seeds)), "seeds": len(seeds), "seconds": seconds}
        progress(f"configuration study {found['study']['name']}: " + ", ".join(f"{n} {s:.2f} s" for n, s in seconds.items()))
    return found


def _provider_rates(plan, progress):
    """Every provider's GFLOP/s on the products of a 784-256-128-10 step, for each (batch,
    BLAS threads) of the plan: {"in_use": ..., "rates": [one row per case, provider and
    product]}."""
    info = blas.blas_info()
    found = {"in_use": {key: info[key] for key in ("provider", "reason", "version", "kernel")}, "rates": []}
    for batch, n_threads in plan["blas_cases"]:
        rates = blas.gemm_rates(batch, n_threads)
        threads = n_threads or "all"
        found["rates"] += [{"batch": batch, "threads": threads, "provider": name, **row}
                           for name, rows in rates.items() for row in rows]
        progress(f"BLAS products of a 784-256-128-10 step, batch {batch}, "
                 f"{'1 thread' if n_threads == 1 else f'{threads} threads'}: "
                 + ", ".join(f"{name} {blas.step_rate(rows):.0f} GFLOP/s" for name, rows in rates.items()))
    return found


def run(plan="default", data_dir=None, stream=sys.stderr, backends=None, with_peers=True):
    """Run every case of a plan (a name of PLANS or a dict like them); returns the results
    as a dict ready for JSON. The training modes and the many-models cases also run the
    installed peers (PyTorch, JAX, scikit-learn) unless with_peers is false. Progress goes to
    stream (None: silent)."""
    plan = PLANS[plan] if isinstance(plan, str) else plan
    backends = backends or kernels.available_backends()
    frameworks = list(backends) + (list(peers.installed()) if with_peers else [])
    data, skipped = None, None
    if plan["accuracy_runs"]:
        try:
            data = mnist_split(data_dir)
        except FileNotFoundError as error:
            skipped = f"MNIST digits not found: {error}"
    else:
        skipped = "not part of this plan (--quick)"
    progress = Progress(_plan_size(plan, backends, data is not None), stream)
    results = {"started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": machine_record(),
               "plan": plan, "backends": backends, "frameworks": frameworks}

    n = plan["gemm_size"]
    rates = {"float32": gemm_rate(np.float32, n)}
    results["gemm_gflops"] = rates
    progress(f"sgemm {n}x{n}x{n}: {rates['float32']:.1f} GFLOP/s")
    results["blas"] = _provider_rates(plan, progress)

    results["kernels"] = []
    for shape in plan["kernel_shapes"]:
        for kernel in kernels.KERNELS:
            case = KernelCase(kernel, *shape)
            # numpy's BLAS and the compiled backends' (SciPy's) are two thread pools
            pause = SPIN_PAUSE if case.flops is not None and shape[0] > 1 else 0.0
            times = measure({name: case.call(name) for name in backends}, plan["repeats"], plan["min_time"],
                            pause=pause)
            for name, seconds in times.items():
                results["kernels"].append({"backend": name, **kernel_results(case, seconds, rates["float32"])})
            progress(f"kernels {case.label}: " + ", ".join(f"{n} {s * 1e6:.1f} us" for n, s in times.items()))

    results["modes"] = []
    n_samples = plan.get("mode_samples", MODE_SAMPLES)
    for net in plan["nets"]:
        names = frameworks if net in plan.get("peer_nets", plan["nets"]) else backends
        # A net whose full batch can go multi-threaded (the lowest threshold is the Cython engine's
        # own threads'): pause between the frameworks' thread pools.
        pause = SPIN_PAUSE if step_flops(NETS[net][0], n_samples) >= OWN_TWO_THREAD_FLOPS else 0.0
        for batch_size in plan["modes"]:
            cases = {name: ModeCase(net, batch_size, name, n_samples=n_samples) for name in names}
            times = measure({name: case.run for name, case in cases.items()}, plan["repeats"], 0, pause=pause)
            for name, seconds in times.items():
                results["modes"].append(mode_results(cases[name], seconds))
            progress(f"modes {net} {mode_name(batch_size)}: " + ", ".join(
                f"{n} {cases[n].samples / s:,.0f} samples/s" for n, s in times.items()))

    results["time_to_accuracy"] = {"skipped": skipped, "runs": []}
    if data is not None:
        for batch_size in plan["modes"]:
            runs = sorted((time_to_accuracy(data, batch_size) for _ in range(plan["accuracy_runs"])),
                          key=lambda run_result: run_result["seconds"])
            run_result = dict(runs[len(runs) // 2], repeats=len(runs))
            results["time_to_accuracy"]["runs"].append(run_result)
            progress(f"time to {TARGET_ACCURACY:.0%} test accuracy, {mode_name(batch_size)}: "
                     f"{run_result['seconds']:.2f} s (median of {len(runs)}), {run_result['epochs']} epochs, "
                     f"accuracy {run_result['accuracy']:.4f}")

    cases = []
    for width in plan["widths"]:
        case = GradientCase(width)
        # backprop runs first and compiles every kernel the naive gradient calls.
        with one_blas_thread():
            times = measure({"backprop": case.backprop}, plan["repeats"], plan["min_time"])
            times.update(measure({"naive": case.naive}, max(3, plan["repeats"] // 3), 0, warm_up=False))
        cases.append({"width": width, "n_params": case.n_params, "naive_seconds": times["naive"],
                      "backprop_seconds": times["backprop"]})
        progress(f"gradient cost {case.n_params:,} parameters: naive {times['naive']:.4g} s, "
                 f"backprop {times['backprop']:.4g} s, ratio {times['naive'] / times['backprop']:,.0f}")
    results["gradient_cost"] = {"batch": GRADIENT_BATCH, "backend": kernels.get_backend().name, "blas_threads": 1,
                                "cases": cases, **gradient_summary(cases)}

    results["many_models"] = _many_models(plan, backends, with_peers, data_dir, progress)

    if plan["cold_start"] and "numba" in backends:
        with tempfile.TemporaryDirectory() as cache:
            cold = numba_first_step(cache)
            cached = numba_first_step(cache)
        results["numba_first_step"] = {"cold_seconds": cold, "cached_seconds": cached}
        progress(f"numba first training step in a new process: {cold:.2f} s compiling, {cached:.2f} s from the cache")
    return results


def write_json(results, path):
    """Write results to path as JSON, atomically (fastnn.atomic.replacing)."""
    with replacing(path) as file:
        file.write(json.dumps(results, indent=1, default=str).encode())


def write_outputs(results, out_dir):
    """results.json and the PNG plots of the groups that ran into out_dir; returns the paths."""
    from .plots import plot_gradient_cost, plot_kernels, plot_throughput, plot_time_to_accuracy  # loads matplotlib

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json"]
    write_json(results, paths[0])
    plots = (("throughput.png", plot_throughput, results["modes"]),
             ("gradient_cost.png", plot_gradient_cost, results["gradient_cost"]["cases"]),
             ("kernels.png", plot_kernels, results["kernels"]),
             ("time_to_accuracy.png", plot_time_to_accuracy, results["time_to_accuracy"]["runs"]))
    for name, plot, rows in plots:
        if rows:
            paths.append(out / name)
            plot(results, paths[-1])
    return paths
