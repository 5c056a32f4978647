"""The record of a fit: per epoch, and optionally per window of updates."""
import numpy as np


class History:
    """Per-epoch record of a fit: training loss and metric (the running mean over the
    epoch's batches), validation loss and metric, wall time.

    ``metric_name`` is 'accuracy' (classification losses) or 'r2' (MSE).
    ``diverged`` is True when a non-finite loss stopped training; ``stop_reason``
    says why training ended; ``best_epoch`` is the epoch early stopping kept.

    With fit's ``loss_every=N`` (``update_loss_every``), ``update_loss`` holds the mean
    training loss of every N updates of the completed epochs (each update's batch loss,
    as its forward pass computed it before the step; the last window may be shorter)
    and ``update_step`` the number of updates at the end of each window, as arrays (a
    long online fit records hundreds of thousands).
    """

    def __init__(self, metric_name, loss_every=None):
        self.metric_name = metric_name
        self.epoch, self.loss, self.metric, self.val_loss, self.val_metric, self.time = [], [], [], [], [], []
        self.diverged = False
        self.stop_reason = "completed"
        self.best_epoch = None
        self.update_loss_every = loss_every
        self._means = []  # arrays of window means, joined when update_loss is read
        self._window = np.zeros(0)  # the losses of the updates after the last full window
        self._updates = 0  # the updates the windows in _means cover

    @property
    def update_loss(self):
        """float64 array: the mean loss of each window of update_loss_every updates."""
        if len(self._means) != 1:
            self._means = [np.concatenate(self._means) if self._means else np.zeros(0)]
        return self._means[0]

    @property
    def update_step(self):
        """int64 array: the updates of this fit done at the end of each window."""
        every = self.update_loss_every or 1
        return np.minimum(np.arange(1, len(self.update_loss) + 1, dtype=np.int64) * every, self._updates)

    def record_updates(self, losses):
        """Add the update losses of completed epochs, in order, to the windows of
        update_loss_every updates."""
        every = self.update_loss_every
        values = np.concatenate([self._window, losses])
        full = len(values) - len(values) % every
        self._means.append(values[:full].reshape(-1, every).mean(axis=1))
        self._updates += full
        self._window = values[full:]

    def end_updates(self):
        """Close the last, shorter window (the end of fit)."""
        if len(self._window):
            self._means.append(np.array([self._window.mean()]))
            self._updates += len(self._window)
            self._window = np.zeros(0)

    def record(self, epoch, loss, metric, val_loss, val_metric, seconds):
        self.epoch.append(epoch)
        self.loss.append(loss)
        self.metric.append(metric)
        self.val_loss.append(val_loss)
        self.val_metric.append(val_metric)
        self.time.append(seconds)

    def record_many(self, first_epoch, losses, metrics, seconds):
        """Record epochs first_epoch, first_epoch + 1, ... trained in one go, without
        validation; each gets an equal share of the seconds."""
        count = len(losses)
        self.epoch.extend(range(first_epoch, first_epoch + count))
        self.loss.extend(losses)
        self.metric.extend(metrics)
        self.val_loss.extend([None] * count)
        self.val_metric.extend([None] * count)
        self.time.extend([seconds / count] * count)

    def as_dict(self):
        """The record as a dict of per-epoch lists and flags (with update_loss and
        update_step when they were recorded)."""
        record = {"epoch": self.epoch, "loss": self.loss, self.metric_name: self.metric, "val_loss": self.val_loss,
                  f"val_{self.metric_name}": self.val_metric, "time": self.time,
                  "diverged": self.diverged, "stop_reason": self.stop_reason, "best_epoch": self.best_epoch}
        if self.update_loss_every is not None:
            record.update(update_loss=self.update_loss, update_step=self.update_step,
                          update_loss_every=self.update_loss_every)
        return record

    def __len__(self):
        return len(self.epoch)

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.4g}" if self.loss else ""
        return f"History({len(self)} epochs{last}, {self.stop_reason})"
