"""Where the MNIST convnet's train step spends its time: XLA's own profile, per compiled operation.

    PYTHONPATH=. python docs/step_profile.py                  # convgrad's step, formulation "auto"
    PYTHONPATH=. python docs/step_profile.py --textbook       # every conv forced to lax convolutions
    PYTHONPATH=. python docs/step_profile.py --autodiff       # jax.grad of the plain-lax network

Runs ``jax.value_and_grad`` of the ``cnn`` loss (batch 128, as ``convgrad bench``) under
``jax.profiler``, and prints the operations of the compiled program that take the most
time per step, each with the JAX operation it came from (XLA's ``op_name`` metadata).
Operations may overlap in time when XLA runs independent ones concurrently, so the
column need not add up to the step time printed first.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from convgrad.bench import _normal
from convgrad.models import KITS, MODELS, loss_fn
from convgrad.ops import conv_formulations

STEPS = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--autodiff", action="store_true", help="jax.grad of the plain-lax network")
    parser.add_argument("--textbook", action="store_true", help='convgrad with formulation="textbook" everywhere')
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if args.textbook:
        conv_formulations.FORMULATIONS["auto"] = conv_formulations.FORMULATIONS["textbook"]
    model = MODELS["cnn"]
    params = model.init(jax.random.key(0))
    images = _normal(0, (128, 28, 28))
    labels = jnp.asarray(np.random.default_rng(1).integers(0, 10, 128), jnp.int32)
    loss, model_state = loss_fn(model, KITS["autodiff" if args.autodiff else "custom"]), model.init_state()
    step = jax.jit(jax.value_and_grad(lambda params, images, labels: loss(params, model_state, images, labels)[0]))
    compiled = step.lower(params, images, labels).compile()
    origin = dict(re.findall(r"%(\S+) = [^\n]*?metadata=\{op_name=\"([^\"]+)\"", compiled.as_text()))
    for _ in range(5):
        jax.block_until_ready(step(params, images, labels))
    start = time.perf_counter()
    for _ in range(STEPS):
        jax.block_until_ready(step(params, images, labels))
    per_step = (time.perf_counter() - start) / STEPS * 1e3
    with tempfile.TemporaryDirectory() as directory:
        with jax.profiler.trace(directory, create_perfetto_trace=True):
            for _ in range(STEPS):
                jax.block_until_ready(step(params, images, labels))
        trace = next(Path(directory).rglob("*.trace.json.gz"))
        events = json.loads(gzip.decompress(trace.read_bytes()))
    events = events["traceEvents"] if isinstance(events, dict) else events
    hlo_names = set(re.findall(r"%(\S+) = ", compiled.as_text()))
    total: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and event.get("name") in hlo_names:
            total[event["name"]] += event["dur"] / 1e3 / STEPS
    print(f"{'autodiff' if args.autodiff else 'convgrad'} value_and_grad of cnn, batch 128: {per_step:.1f} ms per step")
    print(f"(unprofiled), jax {jax.__version__}, {jax.devices()[0]}\n")
    print("| compiled operation | from | ms per step |\n| --- | --- | ---: |")
    for name, ms in total.most_common(args.top):
        print(f"| `{name}` | {origin.get(name, '(no metadata)')} | {ms:.2f} |")


if __name__ == "__main__":
    main()
