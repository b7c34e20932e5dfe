"""NumPy loop references of the losses, example by example, written from PyTorch's definitions."""

from __future__ import annotations

import numpy as np


def _examples(logits, labels, axis):
    """``(z, t, probabilities)``: logits as rows ``(examples, C)``, labels as class indices or rows of probabilities."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    probabilities = np.issubdtype(labels.dtype, np.floating)
    classes = logits.shape[axis]
    examples = logits.size // classes if classes else int(np.prod(np.delete(logits.shape, axis % logits.ndim)))
    z = np.moveaxis(logits, axis, -1).reshape(examples, classes)
    t = (
        np.moveaxis(labels.astype(np.float64), axis, -1).reshape(examples, classes)
        if probabilities
        else labels.reshape(-1)
    )
    return z, t, probabilities


def _log_probs(row):
    """``log softmax(row)``, as ``row - m - log sum_k exp(row[k] - m)`` with ``m`` the row's maximum."""
    if row.size == 0:
        return row
    m = row.max()
    return row - m - np.log(sum(np.exp(v - m) for v in row))


def _example(log_p, t, w, weighted, ignore_index, e, probabilities):
    """``(loss, divisor_weight, q)``: an example's loss, its weight in the mean's divisor, ``dloss/dw / (-log p)``.

    ``q`` is ``None`` for an ignored example, NaN for an out-of-range class index.
    """
    classes = len(log_p)
    if probabilities:
        q = [(1 - e) * t[c] + e / classes for c in range(classes)]  # (no classes: an empty sum)
        return sum(w[c] * q[c] * -log_p[c] for c in range(classes)), 1.0, q
    label = int(t)
    if ignore_index is not None and label == ignore_index:
        return 0.0, 0.0, None
    if not 0 <= label < classes:
        return np.nan, np.nan if weighted else 1.0, np.nan
    q = [(1 - e) * (c == label) + e / classes for c in range(classes)]
    loss = (1 - e) * w[label] * -log_p[label]
    if e > 0:
        loss += e / classes * sum(w[c] * -log_p[c] for c in range(classes))
    return loss, w[label], q


def _per_example(logits, labels, weight, axis, ignore_index, label_smoothing):
    z, t, probabilities = _examples(logits, labels, axis)
    classes = z.shape[1]
    w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
    rows = [
        _example(_log_probs(z[n]), t[n], w, weight is not None, ignore_index, label_smoothing, probabilities)
        for n in range(len(z))
    ]
    return z, t, w, probabilities, rows


def softmax_cross_entropy(
    logits, labels, weight=None, axis=-1, ignore_index=None, label_smoothing=0.0, reduction="none"
) -> np.ndarray:
    """``loss[n] = sum_c w[c] target[n, c] (-log softmax(logits[n])[c])`` (PyTorch's definition), then reduced.

    ``target`` is the smoothed one-hot ``(1 - e) [c = t[n]] + e / C`` of a class index (an
    ignored example costs 0, an out-of-range one NaN) or the smoothed probabilities; the
    ``"mean"`` divides by ``sum_n w[t[n]]`` over the examples not ignored (class indices)
    or by the number of examples (probabilities).
    """
    shape = np.delete(np.shape(logits), axis % max(np.ndim(logits), 1)) if np.ndim(logits) else ()
    _, _, _, _, rows = _per_example(logits, labels, weight, axis, ignore_index, label_smoothing)
    losses = np.array([loss for loss, _, _ in rows], np.float64).reshape(tuple(shape))
    if reduction == "none":
        return losses
    total = float(sum(loss for loss, _, _ in rows))
    if reduction == "sum":
        return np.array(total)
    divisor = sum(d for _, d, _ in rows)
    return np.array(total / divisor if divisor else np.nan)


def softmax_cross_entropy_vjp(
    logits, labels, weight, g, axis=-1, ignore_index=None, label_smoothing=0.0, reduction="none"
):
    """``(dlogits, dlabels, dweight)`` by the chain rule, one example and one class at a time.

    ``loss[n] = sum_c u[n, c] (-log p[n, c])`` with ``d(-log p[n, c]) / dz[n, k] = p[n, k] - [k = c]``, so
    ``dz[n, k] = G[n] sum_c u[n, c] (p[n, k] - [k = c])``, where ``G[n]`` is ``g[n]``, ``g`` (sum) or
    ``g / D`` (mean); ``dtarget[n, c] = G[n] (1 - e) w[c] (-log p[n, c])`` for probabilities;
    ``dw[c] = sum_n G[n] q[n, c] (-log p[n, c])``, and for a mean over class indices also
    ``- g S / D^2`` for each kept example of class ``c`` (``D`` is a sum of their weights).
    Integer labels get ``None``; an out-of-range label's row and all of ``dw`` are NaN.
    """
    z, t, w, probabilities, rows = _per_example(logits, labels, weight, axis, ignore_index, label_smoothing)
    g = np.asarray(g, np.float64)
    examples, classes = z.shape
    total, divisor = sum(loss for loss, _, _ in rows), sum(d for _, d, _ in rows)
    if reduction == "none":
        scales = g.reshape(-1)
    elif reduction == "sum":
        scales = np.full(examples, float(g))
    else:
        scales = np.full(examples, float(g) / divisor if divisor else np.inf)
    dz = np.zeros((examples, classes))
    dt = np.zeros((examples, classes)) if probabilities else None
    dw = np.zeros(classes)
    for n, (_, _, q) in enumerate(rows):
        if q is None:
            continue  # ignored: contributes nothing
        if not isinstance(q, list):
            dz[n], dw[:] = np.nan, np.nan
            continue
        log_p = _log_probs(z[n])
        p = np.exp(log_p)
        u = [w[c] * q[c] for c in range(classes)]
        for k in range(classes):
            dz[n, k] = scales[n] * sum(u[c] * (p[k] - (k == c)) for c in range(classes))
        for c in range(classes):
            if probabilities:
                dt[n, c] = scales[n] * (1 - label_smoothing) * w[c] * -log_p[c]
            if q[c]:
                dw[c] += scales[n] * q[c] * -log_p[c]
            if reduction == "mean" and not probabilities and c == int(t[n]):
                dw[c] -= float(g) * total / divisor**2
    logits = np.asarray(logits)
    back = lambda a: np.moveaxis(a.reshape(*np.moveaxis(logits, axis, -1).shape), -1, axis)
    return back(dz), (back(dt) if probabilities else None), (None if weight is None else dw)


def mse(y, target, reduction="mean") -> np.ndarray:
    """``(y[i] - target[i])^2`` per element, or their sum, or their mean over all ``n`` elements (NaN for none)."""
    y, target = np.asarray(y, np.float64), np.asarray(target, np.float64)
    squares = np.zeros(y.shape)
    for i in np.ndindex(y.shape):
        squares[i] = (y[i] - target[i]) ** 2
    if reduction == "none":
        return squares
    total = float(sum(squares[i] for i in np.ndindex(y.shape)))
    return np.array(total if reduction == "sum" else (total / y.size if y.size else np.nan))


def mse_vjp(y, target, g, reduction="mean"):
    """``(dy, dtarget)``: square ``i`` sends ``2 G[i] (y[i] - target[i])`` to ``y[i]``, minus that to ``target[i]``."""
    y, target, g = (np.asarray(a, np.float64) for a in (y, target, g))
    dy, dtarget = np.zeros_like(y), np.zeros_like(target)
    for i in np.ndindex(y.shape):
        scale = g[i] if reduction == "none" else (g if reduction == "sum" else g / y.size)
        dy[i] = 2 * scale * (y[i] - target[i])
        dtarget[i] = -2 * scale * (y[i] - target[i])
    return dy, dtarget
