"""Where one verify case's time goes: XLA compiling, JAX tracing, lowering to MLIR, the rest.

    PYTHONPATH=. python docs/verify_profile.py conv 0 float32,bfloat16

Checks registry case ``INDEX`` of ``OP`` in each of the comma-separated dtypes, one after
another in this process (after one warm-up case of ``relu``, so JAX's own start-up is not
counted), with the compiled programs kept between the dtypes, and prints each dtype's
wall time, programs compiled, and seconds in JAX's compile events (``jax._src.monitoring``).
"""

from __future__ import annotations

import collections
import sys
import time

import jax.numpy as jnp
from jax._src import monitoring

from convgrad.registry import OPS
from convgrad.verify import clear_caches, verify_case

EVENTS = {
    "/jax/core/compile/backend_compile_duration": "XLA compile",
    "/jax/core/compile/jaxpr_trace_duration": "tracing",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lowering",
}


def main(op: str, index: int, dtypes: list[str]) -> None:
    seconds, counts = collections.Counter(), collections.Counter()

    def listen(event, duration, **_):
        seconds[event] += duration
        counts[event] += 1

    monitoring.register_event_duration_secs_listener(listen)
    verify_case(OPS["relu"], OPS["relu"].cases[0], jnp.float32)
    clear_caches()
    spec = OPS[op]
    print(f"{op} {spec.cases[index]}")
    print("| dtype | wall | programs compiled | " + " | ".join(EVENTS.values()) + " | rest |")
    print("| --- | ---: | ---: |" + " ---: |" * (len(EVENTS) + 1))
    for dtype in dtypes:
        seconds.clear()
        counts.clear()
        start = time.perf_counter()
        result = verify_case(spec, spec.cases[index], jnp.dtype(dtype))
        wall = time.perf_counter() - start
        assert result.passed, result.failure
        parts = [seconds[event] for event in EVENTS]
        cells = [f"{wall:.2f} s", str(counts["/jax/core/compile/backend_compile_duration"])]
        cells += [f"{part:.2f} s" for part in parts] + [f"{wall - sum(parts):.2f} s"]
        print(f"| {dtype} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","))
