"""ReID's report pictures: a query and its ranked gallery as one strip.

    draw_ranked(Path("query/0001_c1s1_000101_00.jpg"), [{"image": ".../0001_c2s1_000201_00.jpg", "match": True}, ...], out)
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

__all__ = ["draw_ranked"]

_QUERY, _MATCH, _MISS = (0, 114, 189), (40, 170, 40), (220, 40, 40)


def draw_ranked(query: Path, ranked: list[dict], out_path: Path, border: int = 2, gap: int = 6) -> None:
    """The query (blue border), then each gallery image in rank order: green when it is the query's
    identity, red when not. Gallery images are resized to the query's size."""
    with Image.open(query) as im:
        q = im.convert("RGB")
    w, h = q.size
    tiles = [(q, _QUERY)]
    for entry in ranked:
        with Image.open(entry["image"]) as im:
            tiles.append((im.convert("RGB").resize((w, h)), _MATCH if entry["match"] else _MISS))
    cell = (w + 2 * border, h + 2 * border)
    strip = Image.new("RGB", (cell[0] * len(tiles) + gap * (len(tiles) - 1) + gap, cell[1]), "white")
    pen = ImageDraw.Draw(strip)
    x = 0
    for n, (tile, colour) in enumerate(tiles):
        pen.rectangle([x, 0, x + cell[0] - 1, cell[1] - 1], fill=colour)
        strip.paste(tile, (x + border, border))
        x += cell[0] + gap + (gap if n == 0 else 0)  # a wider gap after the query
    strip.save(out_path)
