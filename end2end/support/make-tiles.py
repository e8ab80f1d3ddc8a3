#!/usr/bin/env python3
"""Write a small MBTiles archive for the end-to-end tests: every tile of zooms 0 to 3 is a
256 x 256 PNG of one colour (rgb 40, 170, 90), with an attribution in its metadata.

Usage: make-tiles.py OUT.mbtiles
"""
import sqlite3
import struct
import sys
import zlib

COLOUR = (40, 170, 90)
MAX_ZOOM = 3


def png(colour, size=256):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(colour) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * size, 9))
        + chunk(b"IEND", b"")
    )


def main(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    db.executemany(
        "INSERT INTO metadata VALUES (?, ?)",
        [("name", "e2e"), ("format", "png"), ("minzoom", "0"), ("maxzoom", str(MAX_ZOOM)),
         ("attribution", "© Test Archive")],
    )
    tile = png(COLOUR)
    db.executemany(
        "INSERT INTO tiles VALUES (?, ?, ?, ?)",
        [(z, x, y, tile) for z in range(MAX_ZOOM + 1) for x in range(2 ** z) for y in range(2 ** z)],
    )
    db.commit()
    db.close()


if __name__ == "__main__":
    main(sys.argv[1])
