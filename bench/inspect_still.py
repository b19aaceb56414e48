"""Reading a still and finding faces: per-stage times for a 1280x720 label, faces found/missed.

The still is a router label made here (MAC, IMEI and serial in DejaVu Sans, a Wi-Fi QR code
from segno, an EAN-13 from python-barcode): decode, codes (zxing-cpp), text (tesseract, one
core: OMP_THREAD_LIMIT=1, its CPU is the child's), faces (OpenCV's frontal + profile Haar
cascades), total; median of `--rounds`. Then the face detector on a labelled set that ships with
scikit-image: its LFW subset (100 face crops and 100 non-faces, 25x25, scaled to 120 px on
a plain 200x200 canvas) and whole pictures (astronaut: 1 face, camera: 1 face seen from the
side; coffee, chelsea the cat, rocket, hubble_deep_field, the label: none), and the
astronaut placed in a 1280x720 still, at two sizes; plus the time to blur a 1280x720 still,
and the inspect pool's peak memory (RSS of the process and its tesseract children) with 1, 2
and 4 reads of the still at once.

    python bench/inspect_still.py [--rounds 5] [--json]

`--ocr-set` instead scores OCR engines on bench/lib/labels.py's 36 label stills (router
MAC/serial, SIM ICCID, phone-box IMEI; 3 sizes x 2 angles x clean/noisy): fields labelled
exactly by the classifier, fields present in the text at all, CPU per still on one core.
`--engine tesseract` (the server's reader), `rapidocr` (run in `--rapidocr-python`, a venv
with rapidocr-onnxruntime: it cannot be installed beside the project's OpenCV) or `both`.

    python bench/inspect_still.py --ocr-set --engine both --rapidocr-python /tmp/ocrvenv/bin/python
"""

# This file is named like the standard library's `inspect`, which dataclasses and others
# import: the script's own folder must not be first on sys.path.
import os
import sys

sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import io  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from skimage import data as skdata  # noqa: E402

from bench.lib import cli  # noqa: E402
from bench.lib.usage import loadavg  # noqa: E402
from server.inspect.faces import blur_faces, find_faces  # noqa: E402
from server.inspect.read import read_still  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def label_still() -> Image.Image:
    import barcode
    import segno
    from barcode.writer import ImageWriter

    im = Image.new("RGB", (1280, 720), (236, 236, 230))
    d = ImageDraw.Draw(im)
    font = ImageFont.truetype(FONT, 34)
    for y, text in ((60, "MAC: 00:1A:2B:3C:4D:5E"), (130, "IMEI: 352099001761481"),
                    (200, "S/N: RT7X4K92B1")):  # fmt: skip
        d.text((60, y), text, font=font, fill=(20, 20, 20))
    qr = io.BytesIO()
    segno.make("WIFI:T:WPA;S:HomeNet_5G;P:pw;;", micro=False).save(qr, kind="png", scale=8)
    im.paste(Image.open(qr).convert("RGB"), (900, 60))
    ean = io.BytesIO()
    barcode.get("ean13", "590123412345", writer=ImageWriter()).write(ean)
    im.paste(Image.open(ean).convert("RGB"), (60, 330))
    return im


def jpeg(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90)
    return out.getvalue()


def rgb(a: np.ndarray) -> np.ndarray:
    return np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3]


def in_scene(face_px: int) -> np.ndarray:
    scene = Image.new("RGB", (1280, 720), (90, 110, 130))
    astro = Image.fromarray(skdata.astronaut())
    side = round(512 * face_px / 93)  # the astronaut's face is 93 px of 512
    scene.paste(astro.resize((side, side)), (700, max(0, 360 - side // 2)))
    return np.asarray(scene)


def face_set() -> dict[str, Any]:
    lfw = skdata.lfw_subset()

    def crop(i: int) -> np.ndarray:
        face = Image.fromarray((lfw[i] * 255).astype(np.uint8))
        face = face.resize((120, 120), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (200, 200), 128)
        canvas.paste(face, (40, 40))
        return np.asarray(canvas.convert("RGB"))

    lfw_found = sum(1 for i in range(100) if find_faces(crop(i)))
    lfw_false = sum(1 for i in range(100, 200) if find_faces(crop(i)))
    pictures = {  # name: (image, faces in it)
        "astronaut": (skdata.astronaut(), 1), "camera": (rgb(skdata.camera()), 1),
        "coffee": (skdata.coffee(), 0), "chelsea": (skdata.chelsea(), 0),
        "rocket": (skdata.rocket(), 0), "hubble_deep_field": (skdata.hubble_deep_field(), 0),
        "label_1280x720": (np.asarray(label_still()), 0),
        "astronaut_720p_face_160px": (in_scene(160), 1),
        "astronaut_720p_face_60px": (in_scene(60), 1),
    }  # fmt: skip
    per_picture = {}
    found = missed = false_pos = 0
    for name, (image, want) in pictures.items():
        got = len(find_faces(image))
        per_picture[name] = {"faces": want, "found": got}
        found += min(got, want)
        missed += max(want - got, 0)
        false_pos += max(got - want, 0)
    return {
        "lfw_faces": 100, "lfw_found": lfw_found, "lfw_missed": 100 - lfw_found,
        "lfw_non_faces": 100, "lfw_false_positives": lfw_false,
        "pictures_faces": found + missed, "pictures_found": found,
        "pictures_missed": missed, "pictures_false_positives": false_pos,
        "pictures": per_picture,
    }  # fmt: skip


def _rss_kb(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(x.split()[1]) for x in f if x.startswith("VmRSS:")), 0)
    except OSError:
        return 0  # the child ended between the listing and the read


def _children() -> list[str]:
    """This process's tesseract children. Only those that are tesseract already: a child
    between fork and exec still shows the parent's pages as its RSS (counted twice)."""
    out: list[str] = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids = f.read().split()
        except OSError:
            continue
        for pid in pids:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "tesseract":
                        out.append(pid)
            except OSError:
                continue
    return out


def pool_memory(still: bytes, parallel: tuple[int, ...]) -> dict[str, Any]:
    """Peak RSS (this process + its tesseract children, sampled every 10 ms) while N reads
    of the 1280x720 still run at once in an InspectPool of N workers."""
    import asyncio
    import threading

    from server.inspect.pool import InspectPool

    out: dict[str, Any] = {"baseline_mb": round(_rss_kb("self") / 1024, 1)}
    for n in parallel:
        peak = {"total": 0, "child": 0, "children": 0}
        stop = threading.Event()

        def sample(peak: dict[str, int] = peak, stop: threading.Event = stop) -> None:
            while not stop.is_set():
                kids = [_rss_kb(c) for c in _children()]
                total = _rss_kb("self") + sum(kids)
                peak["total"] = max(peak["total"], total)
                peak["child"] = max([peak["child"], *kids])
                peak["children"] = max(peak["children"], len(kids))
                stop.wait(0.01)

        async def reads(n: int = n) -> None:
            pool = InspectPool(workers=n, max_waiting=n, timeout_s=120)
            await asyncio.gather(*(pool.run(lambda: read_still(still, 120)) for _ in range(n)))
            pool.close()

        base = _rss_kb("self")
        sampler = threading.Thread(target=sample)
        sampler.start()
        asyncio.run(reads())
        stop.set()
        sampler.join()
        out[f"parallel_{n}"] = {
            "peak_total_mb": round(peak["total"] / 1024, 1),
            "peak_over_baseline_mb": round((peak["total"] - base) / 1024, 1),
            "peak_tesseract_mb": round(peak["child"] / 1024, 1),
            "tesseracts_at_once": peak["children"],
        }  # fmt: skip
    return out


def ocr_set(engines: list[str], rapidocr_python: str) -> dict[str, Any]:
    from bench.lib import labels

    all_stills = list(labels.stills())
    out: dict[str, Any] = {"stills": len(all_stills),
                           "fields": sum(len(s.fields) for s in all_stills)}  # fmt: skip
    for engine in engines:
        if engine == "tesseract":
            reads = [labels.read_tesseract(s) for s in all_stills]
        else:
            reads = labels.read_rapidocr(all_stills, rapidocr_python)
        exact = present = 0
        missed: list[str] = []
        for s, (lines, _) in zip(all_stills, reads, strict=True):
            e, p = labels.score(lines, s.fields)
            exact, present = exact + e, present + p
            if e < len(s.fields):
                missed.append(s.name)
        cpu = [c for _, c in reads]
        out[engine] = {
            "fields_exact": exact, "fields_present": present,
            "cpu_ms_median": round(statistics.median(cpu) * 1000),
            "cpu_ms_max": round(max(cpu) * 1000), "stills_not_all_exact": missed,
        }  # fmt: skip
    out["load"] = loadavg()
    return out


def ocr_summary(r: dict[str, Any]) -> str:
    rows = [f"{r['stills']} label stills, {r['fields']} fields"]
    for engine in ("tesseract", "rapidocr"):
        if engine in r:
            e = r[engine]
            rows.append(f"  {engine}: {e['fields_exact']}/{r['fields']} exact, "
                        f"{e['fields_present']} present, CPU {e['cpu_ms_median']} ms median "
                        f"({e['cpu_ms_max']} max); not all exact: "
                        + (", ".join(e["stills_not_all_exact"]) or "none"))  # fmt: skip
    return "\n".join([*rows, f"load {r['load']}"])


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="median of this many reads")
    parser.add_argument("--ocr-set", action="store_true", help="score OCR engines on labels")
    parser.add_argument("--engine", choices=("tesseract", "rapidocr", "both"),
                        default="tesseract", help="with --ocr-set")  # fmt: skip
    parser.add_argument("--rapidocr-python", default="/tmp/ocrvenv/bin/python",
                        help="an interpreter with rapidocr-onnxruntime (--engine rapidocr)")
    args = parser.parse_args()
    if args.ocr_set:
        engines = ["tesseract", "rapidocr"] if args.engine == "both" else [args.engine]
        cli.emit(ocr_set(engines, args.rapidocr_python), args.json, ocr_summary)
        return
    still = jpeg(label_still())
    read_still(still)  # warm: the cascade loaded, tesseract's data in the page cache
    stages: dict[str, list[float]] = {}
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    findings = 0
    for _ in range(args.rounds):
        reading = read_still(still)
        findings = len(reading.findings)
        for k, v in reading.timings_ms.items():
            stages.setdefault(k, []).append(v)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    self1 = resource.getrusage(resource.RUSAGE_SELF)

    def per_read_ms(a: Any, b: Any) -> float:
        return ((b.ru_utime + b.ru_stime) - (a.ru_utime + a.ru_stime)) / args.rounds * 1000

    ocr_cpu_ms = per_read_ms(child0, child1)
    own_cpu_ms = per_read_ms(self0, self1)
    memory = pool_memory(still, (1, 2, 4))
    scene = Image.fromarray(in_scene(160))
    blur_ms = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        _, n = blur_faces(scene)
        blur_ms.append((time.perf_counter() - t0) * 1000)
    result = {
        "still": "1280x720 label (JPEG)", "rounds": args.rounds, "findings": findings,
        "stages_ms": {k: round(statistics.median(v), 1) for k, v in stages.items()},
        # CPU per read: the machine is shared, so wall times grow with its load; CPU does not.
        "ocr_child_cpu_ms": round(ocr_cpu_ms, 1), "in_process_cpu_ms": round(own_cpu_ms, 1),
        "cpu_ms_per_read": round(ocr_cpu_ms + own_cpu_ms, 1),
        "redact_1280x720_ms": round(statistics.median(blur_ms), 1), "redact_faces": n,
        "pool_memory": memory, "faces": face_set(), "load": loadavg(),
    }  # fmt: skip

    def summary(r: dict[str, Any]) -> str:
        s, f, m = r["stages_ms"], r["faces"], r["pool_memory"]
        return "\n".join([
            f"{r['still']}, median of {r['rounds']}: {r['findings']} findings",
            "  " + ", ".join(f"{k} {v:.0f} ms" for k, v in s.items()),
            f"  CPU per read {r['cpu_ms_per_read']:.0f} ms (tesseract {r['ocr_child_cpu_ms']:.0f}"
            f" + decode/codes/faces {r['in_process_cpu_ms']:.0f}), each on one core",
            f"  blurring faces in a 1280x720 still: {r['redact_1280x720_ms']:.0f} ms",
            f"pool memory (RSS, process + tesseract children; idle {m['baseline_mb']} MB): "
            + ", ".join(f"{k.split('_')[1]} at once peak {v['peak_total_mb']} MB "
                        f"(+{v['peak_over_baseline_mb']}, tesseract {v['peak_tesseract_mb']})"
                        for k, v in m.items() if k.startswith("parallel")),
            f"faces, LFW subset: {f['lfw_found']}/100 found, {f['lfw_false_positives']}/100 "
            "non-faces taken for faces",
            f"faces, pictures: {f['pictures_found']}/{f['pictures_faces']} found, "
            f"{f['pictures_false_positives']} false: "
            + ", ".join(f"{k} {v['found']}/{v['faces']}" for k, v in f["pictures"].items()),
            f"load {r['load']}",
        ])  # fmt: skip

    cli.emit(result, args.json, summary)


if __name__ == "__main__":
    main()
