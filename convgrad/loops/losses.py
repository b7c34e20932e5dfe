"""NumPy loop references of the losses, example by example."""

from __future__ import annotations

import numpy as np

from convgrad.loops.activations import softmax_vector
from convgrad.loops.dense import rows_of


def softmax_cross_entropy(logits, labels) -> np.ndarray:
    """``loss = -log softmax(logits)[label] = m + log sum_k exp(logits[k] - m) - logits[label]`` per example."""
    logits = np.asarray(logits, np.float64)
    rows, labels_flat = rows_of(logits), np.asarray(labels).reshape(-1)
    losses = []
    for v, label in zip(rows, labels_flat):
        m = v.max()
        losses.append(m + np.log(np.exp(v - m).sum()) - v[label])
    return np.array(losses).reshape(logits.shape[:-1])


def softmax_cross_entropy_vjp(logits, labels, g):
    """``(dlogits, None)``: ``dlogits[k] = g (softmax(logits)[k] - [k == label])`` per example; labels get none."""
    logits, g = np.asarray(logits, np.float64), np.asarray(g, np.float64)
    rows, labels_flat, g_flat = rows_of(logits), np.asarray(labels).reshape(-1), g.reshape(-1)
    grads = []
    for v, label, g_row in zip(rows, labels_flat, g_flat):
        p = softmax_vector(v)
        grads.append([g_row * (p[k] - (k == label)) for k in range(len(v))])
    return np.array(grads).reshape(logits.shape), None


def mse(y, target) -> np.ndarray:
    """``(1/n) sum_i (y[i] - target[i])^2`` over all ``n`` elements."""
    y, target = np.asarray(y, np.float64), np.asarray(target, np.float64)
    return np.array(sum((y[i] - target[i]) ** 2 for i in np.ndindex(y.shape)) / y.size)


def mse_vjp(y, target, g):
    """``(dy, dtarget)``: square ``i`` sends ``g (2/n) (y[i] - target[i])`` to ``y[i]``, minus that to ``target[i]``."""
    y, target, g = (np.asarray(a, np.float64) for a in (y, target, g))
    dy, dtarget = np.zeros_like(y), np.zeros_like(target)
    for i in np.ndindex(y.shape):
        dy[i] = g * 2 * (y[i] - target[i]) / y.size
        dtarget[i] = -g * 2 * (y[i] - target[i]) / y.size
    return dy, dtarget
