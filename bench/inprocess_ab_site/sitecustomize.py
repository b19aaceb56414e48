"""Loaded by every Python process started with this directory on PYTHONPATH (bench/
inprocess_ab.py puts it there for one capacity run). It does nothing unless the process is
the capacity bench's server and CALLASSIST_BENCH_TOGGLE is set: then it switches one part
of the server on and off every PERIOD seconds and writes, per phase, `on cores` (the
process's CPU per second of that phase) to OUT. See bench/inprocess_ab.py."""

import os

_spec = os.environ.get("CALLASSIST_BENCH_TOGGLE", "")
try:
    with open("/proc/self/cmdline", "rb") as _fh:
        _cmd = _fh.read().replace(b"\0", b" ").decode(errors="replace")
except OSError:
    _cmd = ""

if _spec and "--role server --server project" in _cmd:
    import threading
    import time

    def _flipper(period: float, out: str, switch) -> None:  # type: ignore[no-untyped-def]
        on = True
        time.sleep(float(os.environ.get("CALLASSIST_BENCH_TOGGLE_AFTER", "20")))
        with open(out, "a") as fh:
            while True:
                t0, c0 = time.monotonic(), time.process_time()
                time.sleep(period)
                t1, c1 = time.monotonic(), time.process_time()
                fh.write(f"{int(on)} {(c1 - c0) / (t1 - t0):.5f}\n")
                fh.flush()
                on = not on
                switch(on)
                time.sleep(1.0)  # the switch settles: not counted in either phase

    from bench.lib.media import switchable_part

    _point, _period, _out = _spec.split(":", 2)
    _switch = switchable_part(_point)
    threading.Thread(target=_flipper, args=(float(_period), _out, _switch), daemon=True).start()
