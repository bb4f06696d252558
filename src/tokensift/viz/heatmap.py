"""Self-contained HTML heatmap of SePO token scores (``tokensift show``).

SePO's selection is only as good as the oracle's token rewards, and the one
reliable way to sanity-check those is to *look* at them: which tokens of the
chosen answer get the top-k% rewards, which of the rejected answer the
bottom-k%.  :func:`render_heatmap` writes one HTML file that anyone can open
from disk, attach to an issue, or archive next to a run; :func:`heatmap_html`
returns the same page as a string, and :func:`notebook_html` wraps a page for
inline display in Jupyter (a sandboxed ``<iframe srcdoc>``) -- hence:

* **no dependencies** on the Python side (``json``/``html``/``pathlib``) so the
  viewer works in the slimmest install and in CI;
* **no network** in the page (inline CSS/JS, no fonts/CDNs), so it opens
  offline and from ``file://``;
* **data as JSON** in a ``<script type="application/json">`` block with ``<``,
  ``>`` and ``&`` escaped, and the page's JS inserts token text only through
  ``textContent`` -- tokens are arbitrary model output and must never become
  markup (``</script>``, ``<img onerror=...>``);
* **colour scales computed here**, so the browser renders only the current
  pair and a file with thousands of long pairs stays responsive.

Colour scale.  A token's colour is ``score / scale`` clipped to [-1, 1]
(blue negative, white 0, red positive).  ``scale`` is a high quantile
(``scale_quantile``, default p95) of |score| over the finite scores of
**all pairs on the page** by default (``scale="global"``), so an oracle whose
scores are noise (+-0.0005) looks pale next to one with a real signal; the
legend prints the range (``-s .. +s``) so the magnitude is always readable.
``scale="pair"`` (or the page's "global scale" checkbox, or ``&scale=pair`` in
the URL) puts each pair on its own p95 instead, which shows the ranking inside
one pair but makes every pair look equally vivid.  See :func:`robust_scale`.

Wrong way round.  A pair's oracle margin is the sum of the chosen response's
finite token scores minus the sum of the rejected one's (the summed token
rewards; non-finite scores are ignored).  A margin <= 0 means the oracle does
not prefer the chosen answer: the page badges such a pair ("oracle prefers the
rejected answer", with the margin) in the pair view and next to the pair
indicator, counts them in the header and can step through them.

Embedded JSON (``<script id="ts-data">``), version 2 (version 1 had no
``margins`` and no ``scale.default``, and always opened on the per-pair scale)::

    {"version": 2, "title": str, "meta": {...},
     "pairs": [{"row", "prompt", "chosen", "rejected", "extra"}, ...],
     "scale": {"quantile": 0.95, "global": float, "pairs": [float, ...],
               "default": "global" | "pair"},
     "margins": [number|str, ...]}

Each response is ``{"tokens": [str], "scores": [number|str], "selected":
[bool]}``.  JSON has no NaN/Infinity, so non-finite scores are written as the
strings ``"nan"``, ``"inf"``, ``"-inf"``; ``float(x)`` on every score gives the
input back exactly.  Finite data round-trips unchanged.

``margins[i]`` is pair i's oracle margin (a string when non-finite, as above).

The page: ``#pair=N`` (1-based, like its "pair i of n" indicator; clamped to
the valid range) selects the pair on load, ``&scale=pair``/``&scale=global``
the colour scale.  Token text reaches the page's DOM as text only, and the DOM
text of a response is its tokens' text (whitespace marks are CSS-generated).
"""

from __future__ import annotations

import html
import json
import math
import numbers
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .heatmap_template import TEMPLATE

__all__ = ["render_heatmap", "heatmap_html", "notebook_html", "oracle_margin", "robust_scale",
           "DEFAULT_SCALE_QUANTILE", "SCALE_MODES"]

#: Colour saturates at this quantile of |score|, not at the max: one outlier
#: token would otherwise wash every other token out to near-white.
DEFAULT_SCALE_QUANTILE = 0.95
#: The colour of a score at -scale and at +scale (white at 0); the page's JS (heatmap_template NEG/POS) and
#: the TSO review page (tso/review_page.py) use these.
NEGATIVE_RGB = (33, 102, 172)
POSITIVE_RGB = (178, 24, 43)
#: ``scale=`` values: one colour scale for every pair on the page, or one per pair.
SCALE_MODES = ("global", "pair")
JSON_VERSION = 2

_SIDES = ("chosen", "rejected")
_PLACEHOLDER = re.compile(r"__TS_(TITLE|DATA|LO|HI|NOTE|WRONG|NPAIRS)__")
_CSS_LENGTH = re.compile(r"\d+(?:\.\d+)?(?:px|em|rem|vh|%)")
# Characters that could end the <script> element or start an HTML comment /
# entity; JSON's \uXXXX escapes keep JSON.parse output identical.
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def heatmap_html(
    pairs: Iterable[Mapping[str, Any]],
    title: str = "tokensift token scores",
    meta: Mapping[str, Any] | None = None,
    *,
    scale_quantile: float = DEFAULT_SCALE_QUANTILE,
    scale: str = "global",
) -> str:
    """The token-score heatmap page of ``pairs`` as an HTML string (no file).

    ``pairs``: dicts with ``row`` (dataset index; defaults to the position),
    ``prompt`` (str), ``chosen``/``rejected`` (``tokens``, ``scores``, optional
    ``selected`` -- all the same length) and optional ``extra`` (key/values
    shown in the pair header).  ``meta``: key/values for the page header
    (oracle, reference, dataset, strategy, k ...).  ``None`` scores are NaN.
    ``scale``: the colour scale the page opens on, ``"global"`` (all pairs) or
    ``"pair"`` (see the module docstring); the reader can switch in the page.

    Raises ``ValueError``/``TypeError`` on malformed input.
    """
    if not 0.0 < scale_quantile <= 1.0:
        raise ValueError(f"scale_quantile must be in (0, 1], got {scale_quantile!r}")
    if scale not in SCALE_MODES:
        raise ValueError(f"scale must be one of {SCALE_MODES}, got {scale!r}")
    norm = [_normalise_pair(p, i) for i, p in enumerate(pairs)]
    scales = _scales(norm, scale_quantile)
    scales["default"] = scale
    margins = [oracle_margin(p) for p in norm]
    doc = {
        "version": JSON_VERSION,
        "title": str(title),
        "meta": _jsonable(dict(meta or {})),
        "pairs": norm,
        "scale": scales,
        "margins": [_score_json(m) for m in margins],
    }
    first = scales["global"] if scale == "global" or not norm else scales["pairs"][0]
    note = (f"colour scale \u00b1{_short(first)} = p{round(100 * scale_quantile)} |score| of "
            + (f"all pairs ({len(norm)})" if scale == "global" else "this pair"))
    return _fill(TEMPLATE, TITLE=html.escape(str(title), quote=True), DATA=_script_json(doc),
                 LO=f"-{_short(first)}", HI=f"+{_short(first)}", NOTE=html.escape(note),
                 WRONG=str(sum(1 for m in margins if not m > 0)), NPAIRS=str(len(norm)))


def render_heatmap(
    pairs: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    title: str = "tokensift token scores",
    meta: Mapping[str, Any] | None = None,
    *,
    scale_quantile: float = DEFAULT_SCALE_QUANTILE,
    scale: str = "global",
) -> Path:
    """Write the token-score heatmap of ``pairs`` to ``path`` and return it.

    Arguments as :func:`heatmap_html`.  Raises ``ValueError``/``TypeError`` on
    malformed input *before* touching ``path``; the file is written atomically
    (temp file + ``os.replace``) so a crash never leaves a half page where a
    previous good one was.
    """
    page = heatmap_html(pairs, title, meta, scale_quantile=scale_quantile, scale=scale)
    out = Path(path)
    _atomic_write(out, page.encode("utf-8", "replace"))
    return out


def notebook_html(page_html: str, height: int | float | str = 640) -> str:
    """Wrap a full page (from :func:`heatmap_html`) for inline display in Jupyter.

    Returns ``<iframe srcdoc="...">`` with the page HTML-escaped into the
    attribute and ``sandbox="allow-scripts"`` only: the page's script runs, in
    an opaque origin, isolated from the notebook (no access to its DOM, cookies
    or kernel).  Show it with ``IPython.display.HTML(notebook_html(page))``.
    ``height``: pixels, or a CSS length such as ``"80vh"``.
    """
    if isinstance(height, bool) or not isinstance(height, (int, float, str)):
        raise TypeError(f"height must be a number of pixels or a CSS length, got {height!r}")
    if isinstance(height, str):
        if not _CSS_LENGTH.fullmatch(height):
            raise ValueError(f"height must be a CSS length like '640px' or '80vh', got {height!r}")
        css = height
    else:
        if not (math.isfinite(height) and height > 0):
            raise ValueError(f"height must be a positive number of pixels, got {height!r}")
        css = f"{height:g}px"
    return (f'<iframe srcdoc="{html.escape(str(page_html), quote=True)}" sandbox="allow-scripts" '
            f'style="width: 100%; height: {css}; border: 1px solid #ddd;" '
            f'title="tokensift token scores"></iframe>')


def oracle_margin(pair: Mapping[str, Any]) -> float:
    """Sum of the chosen tokens' finite scores minus the rejected tokens' (the
    oracle's reward margin; <= 0: the oracle ranks the pair the wrong way round)."""
    def total(side: str) -> float:
        vals = [v for v in (_as_float(s) for s in _items(pair[side].get("scores"))) if math.isfinite(v)]
        try:
            return math.fsum(vals)
        except OverflowError:  # finite scores whose sum is not: +-inf, like plain sum
            return sum(vals)
    return total("chosen") - total("rejected")


def robust_scale(scores: Iterable[Any], quantile: float = DEFAULT_SCALE_QUANTILE) -> float:
    """Half-width of the symmetric colour scale for ``scores``.

    The ``quantile`` of |score| over finite scores (linear interpolation, like
    ``numpy.quantile``'s default); falls back to max |score| when that is 0
    (mostly-zero scores) and to 1.0 when nothing finite/non-zero is left, so
    the page never divides by zero.
    """
    mags = sorted(abs(v) for v in (_as_float(s) for s in scores) if math.isfinite(v))
    if not mags:
        return 1.0
    pos = quantile * (len(mags) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(mags) - 1)
    scale = mags[lo] + (mags[hi] - mags[lo]) * (pos - lo)
    if scale <= 0.0:
        scale = mags[-1]
    return scale if scale > 0.0 else 1.0


# --------------------------------------------------------------------------- input


def _normalise_pair(pair: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Canonical, JSON-ready copy of one pair; errors name the offending pair."""
    if not isinstance(pair, Mapping):
        raise TypeError(f"pair {index}: expected a dict, got {type(pair).__name__}")
    row = pair.get("row", index)
    out: dict[str, Any] = {
        "row": _jsonable(row),
        "prompt": "" if pair.get("prompt") is None else str(pair["prompt"]),
    }
    for side in _SIDES:
        if side not in pair:
            raise ValueError(f"pair {index} (row {row}): missing {side!r}")
        out[side] = _normalise_response(pair[side], f"pair {index} (row {row}) {side}")
    extra = pair.get("extra") or {}
    if not isinstance(extra, Mapping):
        raise TypeError(f"pair {index} (row {row}): 'extra' must be a dict")
    out["extra"] = _jsonable(dict(extra))
    return out


def _normalise_response(resp: Mapping[str, Any], where: str) -> dict[str, list[Any]]:
    """Check that tokens/scores/selected line up; that mismatch is the usual
    bug (scores for labels shifted by one) and must fail loudly, not render."""
    if not isinstance(resp, Mapping):
        raise TypeError(f"{where}: expected a dict with tokens/scores/selected")
    # no `x or ()`: numpy arrays/tensors refuse truth-testing; iterate instead
    tokens = [str(t) for t in _items(resp.get("tokens"))]
    scores = [_score_json(s) for s in _items(resp.get("scores"))]
    flags = resp.get("selected")
    selected = [False] * len(tokens) if flags is None else [bool(s) for s in flags]
    if not len(tokens) == len(scores) == len(selected):
        raise ValueError(
            f"{where}: {len(tokens)} tokens, {len(scores)} scores, "
            f"{len(selected)} selected flags -- they must be equal"
        )
    return {"tokens": tokens, "scores": scores, "selected": selected}


def _items(value: Any) -> Iterable[Any]:
    return () if value is None else value


def _as_float(value: Any) -> float:
    """Score as a float; ``None`` and the strings ``nan``/``inf`` included."""
    return math.nan if value is None else float(value)


def _score_json(value: Any) -> float | str:
    """Finite scores stay numbers; NaN/inf become strings JSON can carry."""
    v = _as_float(value)
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _jsonable(value: Any) -> Any:
    """Display values (meta, extra, row) as JSON; unknown objects via ``str``.

    ``numbers`` ABCs also catch numpy/torch scalars without importing them.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _score_json(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


# --------------------------------------------------------------------------- output


def _scales(pairs: list[dict[str, Any]], quantile: float) -> dict[str, Any]:
    """Per-pair and global colour scales, precomputed so the page need not
    scan every pair (potentially millions of scores) in the browser."""
    per_pair = []
    everything: list[Any] = []
    for p in pairs:
        scores = p["chosen"]["scores"] + p["rejected"]["scores"]
        per_pair.append(robust_scale(scores, quantile))
        everything.extend(scores)
    return {"quantile": quantile, "global": robust_scale(everything, quantile), "pairs": per_pair}


def _script_json(doc: Mapping[str, Any]) -> str:
    """JSON safe to inline in a <script> element.

    ``ensure_ascii`` also covers lone surrogates (odd byte-level tokens) and
    U+2028/9; the ``<``/``>``/``&`` escapes are inside JSON strings only (they
    are not JSON syntax characters), so ``JSON.parse`` returns the same data.
    """
    text = json.dumps(doc, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    for raw, esc in _SCRIPT_UNSAFE.items():
        text = text.replace(raw, esc)
    return text


def _short(x: float) -> str:
    """3 significant digits (the page's JS ``short`` writes the same)."""
    return f"{x:.3g}"


def _fill(template: str, **values: str) -> str:
    """Single-pass substitution so a title/token containing a placeholder name
    is never substituted a second time."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def _atomic_write(path: Path, payload: bytes) -> None:
    """Temp file in the target directory, fsync, ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
