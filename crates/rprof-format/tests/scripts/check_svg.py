"""Parse an SVG with xml.etree and summarize it.

usage: check_svg.py SVG_FILE

Prints one JSON object: the root tag, every <text> content in document
order, and every frame's <title> (the tooltip inferno gives each box).
Exits non-zero (with the parser's message) if the file is not well-formed
XML.
"""
import json
import sys
import xml.etree.ElementTree as ET

SVG = "{http://www.w3.org/2000/svg}"

root = ET.parse(sys.argv[1]).getroot()
print(json.dumps({
    "root": root.tag,
    "texts": ["".join(t.itertext()) for t in root.iter(SVG + "text")],
    "titles": ["".join(t.itertext()) for t in root.iter(SVG + "title")],
}))
