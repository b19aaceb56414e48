"""Run by another interpreter (a venv with rapidocr-onnxruntime, which needs the GUI build
of OpenCV and so cannot live beside the project's headless one): reads the image paths on
argv with RapidOCR on one thread and prints one JSON line per image, its text lines and the
CPU seconds the read took. Used by bench/inspect_still.py --engine rapidocr."""

import json
import sys
import time

from rapidocr_onnxruntime import RapidOCR

# One core, like tesseract in the server (OMP_THREAD_LIMIT=1): the comparison is per core.
engine = RapidOCR(**{f"{part}_{kind}_op_num_threads": 1
                    for part in ("det", "cls", "rec") for kind in ("intra", "inter")})
engine(sys.argv[1])  # warm: the models are loaded before the first timed read
for path in sys.argv[1:]:
    t0 = time.process_time()
    result, _ = engine(path)
    cpu = time.process_time() - t0
    lines = [text for _box, text, _score in (result or [])]
    print(json.dumps({"path": path, "lines": lines, "cpu_s": cpu}), flush=True)
