"""Tenant logos: PNG or SVG, size-limited and sanitized before storage.

* PNG: decoded by Pillow (which refuses truncated or bomb-sized images) and
  re-encoded, so nothing but pixels survives.
* SVG: parsed with defusedxml (no entities, no external references) and
  rebuilt from an allow-list of drawing elements and attributes: scripts,
  event handlers, foreignObject and any link that is not a local `#id` are
  dropped. Reports embed the logo in PDFs and the portal serves it to
  client viewers, so it must be inert.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from PIL import Image, UnidentifiedImageError

from tenants.errors import InvalidLogo

MAX_LOGO_BYTES = 512 * 1024
MAX_PIXELS = 4096 * 4096
SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"

_ELEMENTS = {
    "svg",
    "g",
    "defs",
    "title",
    "desc",
    "path",
    "rect",
    "circle",
    "ellipse",
    "line",
    "polyline",
    "polygon",
    "text",
    "tspan",
    "linearGradient",
    "radialGradient",
    "stop",
    "clipPath",
    "mask",
    "use",
    "symbol",
}
_ATTRIBUTES = {
    "id",
    "class",
    "x",
    "y",
    "x1",
    "y1",
    "x2",
    "y2",
    "cx",
    "cy",
    "r",
    "rx",
    "ry",
    "width",
    "height",
    "d",
    "points",
    "fill",
    "fill-opacity",
    "fill-rule",
    "stroke",
    "stroke-width",
    "stroke-opacity",
    "stroke-linecap",
    "stroke-linejoin",
    "stroke-miterlimit",
    "stroke-dasharray",
    "opacity",
    "transform",
    "viewBox",
    "preserveAspectRatio",
    "offset",
    "stop-color",
    "stop-opacity",
    "gradientUnits",
    "gradientTransform",
    "clip-path",
    "clip-rule",
    "mask",
    "font-family",
    "font-size",
    "font-weight",
    "text-anchor",
    "dominant-baseline",
    "letter-spacing",
    "version",
    "href",
}
_URL_IN_VALUE = re.compile(r"url\(\s*['\"]?(?!#)", re.IGNORECASE)


def sanitize_logo(data: bytes, media_type: str) -> tuple[bytes, str]:
    if len(data) > MAX_LOGO_BYTES:
        raise InvalidLogo(f"The logo is larger than {MAX_LOGO_BYTES} bytes.", field="logo")
    if media_type == "image/png" or data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png(data), "image/png"
    if (
        media_type in ("image/svg+xml", "image/svg")
        or data.lstrip()[:5] in (b"<?xml", b"<svg ", b"<svg>")
        or b"<svg" in data[:1024]
    ):
        return _svg(data), "image/svg+xml"
    raise InvalidLogo("The logo must be a PNG or an SVG image.", field="logo")


def _png(data: bytes) -> bytes:
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise InvalidLogo("The file is not a PNG image.", field="logo")
            image.load()
            out = io.BytesIO()
            image.save(out, format="PNG", optimize=True)
    except (
        UnidentifiedImageError,
        OSError,
        Image.DecompressionBombError,
        SyntaxError,
        ValueError,
    ) as exc:
        raise InvalidLogo("The PNG image could not be read.", field="logo") from exc
    return out.getvalue()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _clean(element: ET.Element) -> ET.Element | None:
    name = _local(element.tag)
    if name not in _ELEMENTS:
        return None
    clean = ET.Element(f"{{{SVG_NS}}}{name}")
    for key, value in element.attrib.items():
        attr = _local(key)
        if attr not in _ATTRIBUTES or attr.lower().startswith("on"):
            continue
        if attr == "href" and not value.startswith("#"):
            continue
        if _URL_IN_VALUE.search(value) or "javascript:" in value.lower():
            continue
        clean.set(
            f"{{{XLINK_NS}}}href" if attr == "href" and key.startswith(f"{{{XLINK_NS}}}") else attr,
            value,
        )
    clean.text = element.text if name in ("text", "tspan", "title", "desc") else None
    for child in element:
        cleaned = _clean(child)
        if cleaned is not None:
            cleaned.tail = child.tail if name in ("text", "tspan") else None
            clean.append(cleaned)
    return clean


def _svg(data: bytes) -> bytes:
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise InvalidLogo("The SVG could not be parsed safely.", field="logo") from exc
    if _local(root.tag) != "svg":
        raise InvalidLogo("The file is not an SVG image.", field="logo")
    cleaned = _clean(root)
    assert cleaned is not None
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    out: bytes = ET.tostring(cleaned, encoding="utf-8", xml_declaration=True)
    return out
