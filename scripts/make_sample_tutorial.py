"""Draw the images of the sample tutorial in server/tutorials/router-restart (needs Pillow).

The pictures are language-neutral line drawings; the texts are in tutorial.json. Run it
again after changing a drawing: `python scripts/make_sample_tutorial.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "server" / "tutorials" / "router-restart"
W, H = 480, 320
BG, INK, ACCENT, LED, OFF = "#f4f5f6", "#1c2429", "#d7263d", "#2ecc71", "#9aa6b0"


def router(d: ImageDraw.ImageDraw, leds: str, cable: bool = True) -> None:
    d.rounded_rectangle((90, 130, 390, 220), 18, fill="#ffffff", outline=INK, width=5)
    for i, x in enumerate(range(130, 260, 40)):
        d.ellipse((x, 165, x + 18, 183), fill=LED if leds[i] == "1" else OFF, outline=INK, width=2)
    d.line((150, 130, 120, 60), fill=INK, width=6)  # antennas
    d.line((330, 130, 360, 60), fill=INK, width=6)
    d.rectangle((300, 160, 330, 190), fill="#ffffff", outline=INK, width=3)  # power socket
    if cable:
        d.line((315, 190, 315, 250), fill=INK, width=8)
        d.line((315, 250, 440, 250), fill=INK, width=8)


def arrow(d: ImageDraw.ImageDraw, a: tuple[int, int], b: tuple[int, int]) -> None:
    d.line((*a, *b), fill=ACCENT, width=9)

    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    for s in (-0.5, 0.5):
        d.line((*b, b[0] - 30 * math.cos(ang + s), b[1] - 30 * math.sin(ang + s)), fill=ACCENT,
               width=9)  # fmt: skip


def step(name: str, draw) -> None:  # type: ignore[no-untyped-def]
    img = Image.new("RGB", (W, H), BG)
    draw(ImageDraw.Draw(img))
    img.save(OUT / name, optimize=True)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)

    def s1(d: ImageDraw.ImageDraw) -> None:
        router(d, "1010")
        d.ellipse((285, 145, 345, 205), outline=ACCENT, width=6)

    def s2(d: ImageDraw.ImageDraw) -> None:
        router(d, "0000", cable=False)
        d.line((380, 250, 440, 250), fill=INK, width=8)
        arrow(d, (330, 280), (400, 280))
        d.text((195, 40), "30 s", fill=INK, font_size=44)

    def s3(d: ImageDraw.ImageDraw) -> None:
        router(d, "1111")
        arrow(d, (190, 290), (190, 200))

    step("1.png", s1)
    step("2.png", s2)
    step("3.png", s3)


if __name__ == "__main__":
    main()
