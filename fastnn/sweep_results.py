"""What a sweep gives and how runs are summed up: SweepResult (one row per configuration
and seed; summaries, tables, box plots), the interquartile mean, and the curves of many
runs' histories (for plot.history_band).
"""
import math

import numpy as np
from scipy.stats import trim_mean


def label(config):
    """'name=value, ...' for a configuration."""
    return ", ".join(f"{name}={value}" for name, value in config.items())


def iqm(values, axis=None):
    """Interquartile mean: the mean of the values left after dropping the lowest and
    the highest quarter (scipy.stats.trim_mean with 0.25). With axis, an array of them
    along that axis (axis=0 of runs × epochs: one per epoch)."""
    if axis is None:
        return float(trim_mean(np.asarray(values, np.float64), 0.25))
    return trim_mean(np.asarray(values, np.float64), 0.25, axis=axis)


def curves(histories, key="loss"):
    """The per-epoch values of key from several runs as one array (runs × epochs).

    histories is a list of fastnn History objects or of dicts of per-epoch lists
    (History.as_dict()), all recording the same metrics over the same number of epochs.
    A SweepResult does not qualify: its rows keep one number per metric and run, not
    curves; collect the histories of the runs in a list instead.
    """
    if isinstance(histories, (str, bytes, dict)) or not hasattr(histories, "__iter__"):
        raise TypeError(f"histories must be a list of History objects or dicts of per-epoch lists; "
                        f"got {type(histories).__name__}")
    records = []
    for i, history in enumerate(histories):
        if hasattr(history, "as_dict"):
            history = history.as_dict()
        if not isinstance(history, dict):
            raise TypeError(f"histories[{i}] must be a History or a dict of per-epoch lists; "
                            f"got {type(history).__name__}")
        records.append(history)
    if not records:
        raise ValueError("histories is empty: give at least one run's history")
    names = [sorted(name for name, value in record.items() if isinstance(value, (list, tuple, np.ndarray)))
             for record in records]
    for i, record_names in enumerate(names):
        if record_names != names[0]:
            raise ValueError(f"histories must all record the same metrics; histories[0] has {names[0]}, "
                             f"histories[{i}] has {record_names}")
    if key not in names[0]:
        raise ValueError(f"key {key!r} is not recorded by the histories; they record {names[0]}")
    lengths = [len(record[key]) for record in records]
    if len(set(lengths)) > 1 or not lengths[0]:
        raise ValueError(f"histories must all hold the same number of epochs, at least one; got {lengths}")
    for i, record in enumerate(records):
        if any(value is None for value in record[key]):
            raise ValueError(f"histories[{i}][{key!r}] has epochs with no value (None): a validation "
                             "metric needs validation data in every epoch")
    return np.array([record[key] for record in records], np.float64)


def median_and_worst(histories, key="loss"):
    """(median, worst): indices into histories of the median run and of the worst run by
    the final value of key, a loss (the worst is the highest). With an even number of
    runs the median is the lower of the middle two (see curves for what histories holds)."""
    final = curves(histories, key)[:, -1]
    order = np.argsort(final, kind="stable")
    return int(order[(len(order) - 1) // 2]), int(order[-1])


class SweepResult:
    """The rows of a sweep, one per run: {'config', 'seed', 'metrics', 'time', 'error'}
    (error is None, or the traceback or worker failure of a run that did not finish);
    configs lists the configurations in grid order."""

    def __init__(self, configs, rows):
        self.configs = configs
        self.rows = rows

    @property
    def errors(self):
        """The rows of runs that failed."""
        return [row for row in self.rows if row["error"] is not None]

    def first_error(self):
        """'the first, <config> seed <s>: <last line of its error>', or None when no run failed."""
        if not self.errors:
            return None
        row = self.errors[0]
        lines = row["error"].strip().splitlines() or [""]
        return f"the first, {label(row['config'])} seed {row['seed']}: {lines[-1]}"

    @property
    def metric_names(self):
        names = {}
        for row in self.rows:
            names.update(dict.fromkeys(row["metrics"]))
        return list(names)

    def values(self, metric):
        """{configuration label: [metric of each successful run, in seed order]}; a
        ValueError with the first error when every run failed, a KeyError for a metric
        that no run reported."""
        if metric not in self.metric_names:
            if len(self.errors) == len(self.rows):
                raise ValueError(f"no run reported metric {metric!r}: all {len(self.rows)} runs failed; "
                                 f"{self.first_error()}")
            raise KeyError(f"no run reported metric {metric!r}; metrics: {self.metric_names}")
        return {label(config): [row["metrics"][metric] for row in self.rows
                                if row["config"] == config and metric in row["metrics"]]
                for config in self.configs}

    def summary(self, metric):
        """Per configuration: n (successful runs), failed, median, iqm (interquartile mean),
        q1 and q3 (quartiles), min, max and mean of metric; NaN where no run succeeded."""
        table = []
        for config, (name, values) in zip(self.configs, self.values(metric).items()):
            values = np.asarray(values, np.float64)
            failed = sum(1 for row in self.rows if row["config"] == config and row["error"] is not None)
            stats = {"config": config, "label": name, "n": len(values), "failed": failed}
            if len(values):
                q1, median, q3 = np.percentile(values, [25, 50, 75])
                stats.update(median=float(median), iqm=iqm(values), q1=float(q1), q3=float(q3),
                             min=float(values.min()), max=float(values.max()), mean=float(values.mean()))
            else:
                stats.update(dict.fromkeys(["median", "iqm", "q1", "q3", "min", "max", "mean"], math.nan))
            table.append(stats)
        return table

    def table(self, metric, digits=4):
        """summary(metric) as aligned text, one line per configuration."""
        summary = self.summary(metric)
        width = max(len("configuration"), *(len(s["label"]) for s in summary))
        columns = ["median", "iqm", "q1", "q3", "min", "max"]
        lines = [f"{'configuration':<{width}}  {'n':>3} {'failed':>6} " + " ".join(f"{c:>{digits + 4}}" for c in columns)]
        for s in summary:
            lines.append(f"{s['label']:<{width}}  {s['n']:>3} {s['failed']:>6} "
                         + " ".join(f"{s[c]:>{digits + 4}.{digits}f}" for c in columns))
        return "\n".join(lines)

    def boxplot(self, metric, title=None, path=None):
        """Box plots of metric over the seeds, one per configuration (fastnn.plot.boxplot)."""
        from . import plot

        return plot.boxplot(self.values(metric), ylabel=metric, title=title, path=path)

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        return f"SweepResult({len(self.configs)} configurations, {len(self.rows)} runs, {len(self.errors)} failed)"
