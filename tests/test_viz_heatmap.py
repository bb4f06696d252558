"""Tests for tokensift.viz.render_heatmap (the `tokensift show` page).

Static tests check what the Python side promises (round-trip, escaping,
offline-ness, atomic write).  The Chromium tests check that the page's JS
actually renders the pair named in the URL hash -- skipped, with the reason,
when no Chromium/Chrome binary is installed (set TOKENSIFT_CHROMIUM to point
at one explicitly).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import subprocess
import time
from fractions import Fraction
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tokensift import viz
from tokensift.viz import render_heatmap, robust_scale

XSS = "<img src=x onerror=\"document.title='pwned'\">"
BREAKOUT = "</script><script>document.title='pwned'</script>"
DATA_RE = re.compile(r'<script type="application/json" id="ts-data">(.*?)</script>', re.S)


def _resp(tokens, scores, selected):
    return {"tokens": list(tokens), "scores": list(scores), "selected": list(selected)}


def _pair(row, n_chosen, n_rejected, seed=0, prompt="user: hi"):
    """Deterministic pair; every third token selected, scores of mixed sign."""
    def side(n, prefix, sign):
        toks = [f" {prefix}{i}" for i in range(n)]
        scores = [sign * (((i * 37 + seed * 11) % 101) - 50) / 25.0 for i in range(n)]
        return _resp(toks, scores, [i % 3 == 0 for i in range(n)])

    return {"row": row, "prompt": prompt, "chosen": side(n_chosen, "c", 1.0),
            "rejected": side(n_rejected, "r", -1.0), "extra": {"k_chosen": 0.3, "k_rejected": 0.3}}


def _tricky_pair(row=12):
    """XSS/breakout tokens, whitespace, special tokens, NaN/inf scores."""
    chosen = _resp(
        ["Hel", "lo", " world", "\n", "  indented", "<|im_end|>", BREAKOUT, XSS, "\t", "", "<!--"],
        [0.12, -0.3, 1.5, 0.01, float("nan"), 0.2, -2.0, 0.5, float("inf"), -0.9, 0.0],
        [False, False, True, False, False, False, True, True, False, False, False],
    )
    rejected = _resp(["No", " way", XSS, "</s>"], [-1.25, 0.75, -0.5, float("-inf")],
                     [True, False, True, False])
    return {"row": row, "prompt": "user: say </script> & <b>hi</b>", "chosen": chosen,
            "rejected": rejected, "extra": {"k_chosen": 0.3, "note": XSS}}


def _embedded(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    blocks = DATA_RE.findall(text)
    assert len(blocks) == 1, "exactly one JSON data block"
    return json.loads(blocks[0], parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


# ------------------------------------------------------------------ static checks


def test_writes_file_creates_dirs_and_returns_path(tmp_path):
    out = render_heatmap([_pair(0, 5, 4)], str(tmp_path / "a" / "b" / "page.html"))
    assert isinstance(out, Path) and out.is_file()
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_page_is_self_contained(tmp_path):
    out = render_heatmap([_tricky_pair(), _pair(1, 30, 20)], tmp_path / "p.html", meta={"oracle": "o"})
    text = out.read_text(encoding="utf-8").lower()
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert re.search(r"<script[^>]*\bsrc=", text) is None
    assert "<style>" in text and 'type="application/json"' in text


def test_embedded_json_roundtrips_input_exactly(tmp_path):
    pairs = [_pair(7, 40, 33, seed=1), _pair(9, 0, 5, seed=2), _pair(11, 3, 0, seed=3, prompt="ünï ✓ 中文")]
    pairs[0]["chosen"]["scores"][0] = 0.1 + 0.2  # a float whose repr needs all 17 digits
    meta = {"oracle": "Qwen/Qwen2.5-0.5B-Instruct", "reference": "ref", "strategy": "top-k", "k": [0.1, 0.3]}
    doc = _embedded(render_heatmap(pairs, tmp_path / "p.html", title="t", meta=meta))
    assert doc["pairs"] == pairs
    assert doc["meta"] == meta and doc["title"] == "t"


def test_script_breakout_and_xss_tokens_are_escaped(tmp_path):
    out = render_heatmap([_tricky_pair()], tmp_path / "p.html", title="</title><script>alert(1)</script>")
    text = out.read_text(encoding="utf-8")
    # only the template's own two script elements close; no token closes one
    assert len(re.findall(r"</script", text, re.I)) == 2
    assert len(re.findall(r"<script", text, re.I)) == 2
    assert "<img" not in text and "<!--" not in text
    data = DATA_RE.search(text).group(1)
    assert "<" not in data and ">" not in data and "&" not in data
    assert "&lt;/title&gt;&lt;script&gt;" in text  # title is HTML-escaped
    doc = _embedded(out)
    assert doc["pairs"][0]["chosen"]["tokens"][6:8] == [BREAKOUT, XSS]
    assert doc["pairs"][0]["extra"]["note"] == XSS
    assert doc["title"] == "</title><script>alert(1)</script>"
    assert "innerHTML" not in text and "outerHTML" not in text and "document.write" not in text


def test_placeholder_names_in_data_are_not_substituted(tmp_path):
    pair = _pair(0, 2, 2)
    pair["chosen"]["tokens"] = ["__TS_DATA__", "__TS_TITLE__"]
    doc = _embedded(render_heatmap([pair], tmp_path / "p.html", title="__TS_DATA__"))
    assert doc["pairs"][0]["chosen"]["tokens"] == ["__TS_DATA__", "__TS_TITLE__"]
    assert doc["title"] == "__TS_DATA__"


def test_non_finite_scores_are_strings_and_float_roundtrips(tmp_path):
    pair = _pair(0, 4, 1)
    pair["chosen"]["scores"] = [float("nan"), float("inf"), float("-inf"), None]
    doc = _embedded(render_heatmap([pair], tmp_path / "p.html"))
    got = doc["pairs"][0]["chosen"]["scores"]
    assert got == ["nan", "inf", "-inf", "nan"]
    back = [float(s) for s in got]
    assert math.isnan(back[0]) and back[1] == math.inf and back[2] == -math.inf


def test_canonical_defaults_and_display_values(tmp_path):
    pair = {"prompt": None,
            "chosen": {"tokens": ("a", 5), "scores": (1, Fraction(1, 4))},
            "rejected": {"tokens": [], "scores": []}}
    meta = {"k": Fraction(1, 2), "path": Path("/x/y"), "nested": {"a": (1, 2.5)}, "bad": float("nan")}
    doc = _embedded(render_heatmap([pair], tmp_path / "p.html", meta=meta))
    assert doc["pairs"] == [{"row": 0, "prompt": "",
                             "chosen": {"tokens": ["a", "5"], "scores": [1.0, 0.25], "selected": [False, False]},
                             "rejected": {"tokens": [], "scores": [], "selected": []}, "extra": {}}]
    assert doc["meta"] == {"k": 0.5, "path": "/x/y", "nested": {"a": [1, 2.5]}, "bad": "nan"}


class _ArrayLike:
    """Sequence that, like a numpy array or tensor, refuses truth-testing."""

    def __init__(self, values):
        self.values = list(values)

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)

    def __bool__(self):
        raise ValueError("truth value of an array is ambiguous")


def test_array_like_inputs(tmp_path):
    pair = {"row": 1, "prompt": "p",
            "chosen": {"tokens": _ArrayLike(["a", "b"]), "scores": _ArrayLike([0.5, -1.0]),
                       "selected": _ArrayLike([1, 0])},
            "rejected": {"tokens": _ArrayLike([]), "scores": _ArrayLike([]), "selected": _ArrayLike([])}}
    doc = _embedded(render_heatmap([pair], tmp_path / "p.html"))
    assert doc["pairs"][0]["chosen"] == _resp(["a", "b"], [0.5, -1.0], [True, False])


@pytest.mark.parametrize("bad, err", [
    ({"chosen": _resp(["a", "b"], [1.0], [True, False]), "rejected": _resp([], [], [])}, ValueError),
    ({"chosen": _resp(["a"], [1.0], [True, False]), "rejected": _resp([], [], [])}, ValueError),
    ({"chosen": _resp(["a"], [1.0], [True])}, ValueError),
    ({"chosen": ["a"], "rejected": _resp([], [], [])}, TypeError),
    ("not a dict", TypeError),
])
def test_malformed_input_raises_and_keeps_previous_file(tmp_path, bad, err):
    out = render_heatmap([_pair(0, 3, 3)], tmp_path / "p.html")
    before = out.read_bytes()
    with pytest.raises(err):
        render_heatmap([_pair(1, 2, 2), bad], out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.html"]


def test_bad_quantile_rejected(tmp_path):
    with pytest.raises(ValueError):
        render_heatmap([], tmp_path / "p.html", scale_quantile=0.0)


def test_robust_scale():
    assert robust_scale([]) == 1.0
    assert robust_scale([float("nan"), None, "inf"]) == 1.0
    assert robust_scale([0.0, 0.0]) == 1.0
    assert robust_scale([0.0] * 99 + [3.0]) == 3.0  # p95 is 0 -> falls back to max
    vals = [float(i) for i in range(-100, 101)]
    assert robust_scale(vals, 0.5) == pytest.approx(50.0)
    assert robust_scale(vals + [1e9]) < 100.0  # one outlier does not wash the page out
    assert robust_scale([-2.0], 0.95) == 2.0


def test_scales_embedded_per_pair_and_global(tmp_path):
    a, b = _pair(0, 50, 50, seed=1), _pair(1, 10, 10, seed=2)
    b["chosen"]["scores"] = [s * 100 for s in b["chosen"]["scores"]]
    doc = _embedded(render_heatmap([a, b], tmp_path / "p.html"))
    sc = doc["scale"]
    assert sc["quantile"] == 0.95
    assert sc["pairs"][0] == pytest.approx(robust_scale(a["chosen"]["scores"] + a["rejected"]["scores"]))
    assert sc["pairs"][1] > 10 * sc["pairs"][0]
    everything = [s for p in (a, b) for side in ("chosen", "rejected") for s in p[side]["scores"]]
    assert sc["global"] == pytest.approx(robust_scale(everything))


def test_empty_pairs(tmp_path):
    out = render_heatmap([], tmp_path / "p.html")
    doc = _embedded(out)
    assert doc["pairs"] == [] and doc["scale"]["pairs"] == []
    assert "no pairs" in out.read_text(encoding="utf-8")


def test_many_pairs_and_long_responses_are_fast(tmp_path):
    pairs = [_pair(i, 40, 40, seed=i) for i in range(1200)] + [_pair(5000, 3000, 2500)]
    t0 = time.perf_counter()
    out = render_heatmap(pairs, tmp_path / "p.html")
    assert time.perf_counter() - t0 < 10.0
    assert len(_embedded(out)["pairs"]) == 1201


# ------------------------------------------------------------------ scale, oracle margin, string/notebook API


def _signal_and_noise():
    """A pair with a real signal (|score| ~ 1) and one whose scores are oracle noise (+-0.0005)."""
    signal = _pair(0, 20, 20, seed=1)
    noise = {"row": 1, "prompt": "p",
             "chosen": _resp([f" n{i}" for i in range(8)], [(-1) ** i * 0.0005 for i in range(8)], [True] * 8),
             "rejected": _resp([f" m{i}" for i in range(8)], [(-1) ** i * 0.0004 for i in range(8)], [False] * 8)}
    return [signal, noise]


def _static_text(text, ident):
    m = re.search(rf'<(\w+)\b[^>]*\bid="{ident}"[^>]*>([^<]*)<', text)
    assert m, f"no #{ident} in the page"
    return m.group(2)


def test_default_scale_is_global_and_the_legend_prints_its_range(tmp_path):
    pairs = _signal_and_noise()
    text = viz.heatmap_html(pairs)
    doc = json.loads(DATA_RE.search(text).group(1))
    sc = doc["scale"]
    assert doc["version"] == 2 and sc["default"] == "global"
    assert sc["global"] == pytest.approx(robust_scale(
        [s for p in pairs for side in ("chosen", "rejected") for s in p[side]["scores"]]))
    assert sc["pairs"][1] == pytest.approx(0.0005)  # the noise pair alone would look as vivid as the signal
    # the legend carries the numbers before any script runs
    assert _static_text(text, "lo") == f"-{sc['global']:.3g}" and _static_text(text, "hi") == f"+{sc['global']:.3g}"
    assert f"\u00b1{sc['global']:.3g}" in _static_text(text, "scalenote")
    assert "all pairs" in _static_text(text, "scalenote")
    # per pair stays available: as an option here, and as a toggle in the page
    per = viz.heatmap_html(pairs, scale="pair")
    assert json.loads(DATA_RE.search(per).group(1))["scale"]["default"] == "pair"
    assert _static_text(per, "lo") == f"-{sc['pairs'][0]:.3g}" and "this pair" in _static_text(per, "scalenote")
    assert 'id="global" type="checkbox"' in text
    with pytest.raises(ValueError):
        viz.heatmap_html(pairs, scale="per-pair")


def test_oracle_margin_marks_pairs_ranked_the_wrong_way_round(tmp_path):
    nan, inf = float("nan"), float("inf")
    pairs = [
        {"chosen": _resp("abc", [0.5, nan, 0.25], [0] * 3), "rejected": _resp("de", [1.0, inf], [0] * 2)},  # -0.25
        {"chosen": _resp("ab", [1.0, 2.0], [0] * 2), "rejected": _resp("d", [0.5], [0])},                     # +2.5
        {"chosen": _resp("", [], []), "rejected": _resp("", [], [])},                                           # 0: tie
        {"chosen": _resp("ab", [-inf, 0.125], [0] * 2), "rejected": _resp("d", [-0.375], [0])},               # +0.5
        {"chosen": _resp("a", [-1.0], [0]), "rejected": _resp("de", [None, -0.5], [0] * 2)},                  # -0.5
    ]
    want = [-0.25, 2.5, 0.0, 0.5, -0.5]
    assert [viz.oracle_margin(p) for p in pairs] == want
    text = render_heatmap(pairs, tmp_path / "p.html").read_text(encoding="utf-8")
    assert json.loads(DATA_RE.search(text).group(1))["margins"] == want
    assert _static_text(text, "wrongcount") == "3"
    assert "oracle prefers the rejected answer" in text and "of 5 pairs" in text


def test_heatmap_html_is_the_page_render_heatmap_writes(tmp_path):
    pairs = [_tricky_pair(), _pair(1, 5, 4)]
    text = viz.heatmap_html(pairs, title="t", meta={"oracle": "o"})
    assert isinstance(text, str) and text.startswith("<!DOCTYPE html>")
    assert render_heatmap(pairs, tmp_path / "p.html", title="t", meta={"oracle": "o"}).read_text(
        encoding="utf-8") == text
    assert list(tmp_path.iterdir()) == [tmp_path / "p.html"]


class _Tags(HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.starts = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.starts.append((tag, dict(attrs)))


def test_notebook_html_escapes_the_page_into_a_sandboxed_srcdoc():
    page = viz.heatmap_html([_tricky_pair()], title="</title><script>alert(1)</script>")
    wrapped = viz.notebook_html(page, height=480)
    tags = _Tags(wrapped).starts
    assert [t for t, _ in tags] == ["iframe"], "the page's markup must stay inside the attribute"
    attrs = tags[0][1]
    assert attrs["sandbox"] == "allow-scripts"  # scripts run, but in an opaque origin: no same-origin access
    assert attrs["srcdoc"] == page  # the browser gets the page back exactly
    assert "height: 480px" in attrs["style"]
    assert wrapped.count("<") == 2 and wrapped.endswith("</iframe>")  # only the iframe's own tags
    assert "<img" not in wrapped and "<script" not in wrapped.lower()
    assert viz.notebook_html("<p>", height="80vh").count("80vh") == 1
    for bad in ('1px" onload="alert(1)', -5, 0, float("nan"), True):
        with pytest.raises((ValueError, TypeError)):
            viz.notebook_html(page, height=bad)


# ------------------------------------------------------------------ headless Chromium


def _find_chromium():
    env = os.environ.get("TOKENSIFT_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


CHROMIUM = _find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium/Chrome binary (chromium, chromium-browser, google-chrome, /usr/bin/chromium; "
           "or set TOKENSIFT_CHROMIUM) -- `apt-get install -y chromium` to run the render tests",
)
N_FILLER = 1000


def _chromium(url, tmp_path, *extra):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'chrome-profile'}", "--virtual-time-budget=2000", *extra, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


class _Dom(HTMLParser):
    """Token spans (data-side), text of id'd leaf elements, tag counts."""

    def __init__(self, text):
        super().__init__()
        self.spans, self.ids, self.tags, self.attrs = [], {}, {}, {}
        self._open = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "html":
            self.attrs = a
        if tag == "span" and "data-side" in a:
            self.spans.append(a)
        if "id" in a:
            self.ids[a["id"]] = {"attrs": a, "text": ""}
            self._open = a["id"]

    def handle_endtag(self, tag):
        self._open = None

    def handle_data(self, data):
        if self._open:
            self.ids[self._open]["text"] += data

    def side(self, name):
        return [s for s in self.spans if s["data-side"] == name]


def _classes(span):
    return span.get("class", "").split()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """Pair 2 is the tricky one, pair 3 has 1,500 tokens vs. an empty
    response, then 1,000 filler pairs (paging must not depend on N)."""
    pairs = [_pair(3, 6, 5), _tricky_pair(12), _pair(40, 1500, 0, seed=4)]
    pairs += [_pair(100 + i, 8, 8, seed=i) for i in range(N_FILLER)]
    out = render_heatmap(pairs, tmp_path_factory.mktemp("page") / "heatmap.html",
                         meta={"oracle": "tiny-oracle", "strategy": "top-k", "k": 0.3})
    return out, pairs


@needs_chromium
def test_chromium_renders_pair_from_hash(page, tmp_path):
    out, pairs = page
    dom = _Dom(_chromium(out.as_uri() + "#pair=2", tmp_path, "--dump-dom"))
    assert dom.attrs.get("data-ready") == "1", "page script did not finish"
    assert dom.ids["pos"]["text"] == f"pair 2 of {len(pairs)}"
    assert dom.ids["row"]["text"] == "12"
    assert "hidden" in dom.ids["empty"]["attrs"] and "hidden" not in dom.ids["pair"]["attrs"]
    for side in ("chosen", "rejected"):
        spans, want = dom.side(side), pairs[1][side]
        assert len(spans) == len(want["tokens"])
        assert [int(s["data-i"]) for s in spans] == list(range(len(spans)))
        assert sum("sel" in _classes(s) for s in spans) == sum(want["selected"])
    chosen = dom.side("chosen")
    assert [i for i, s in enumerate(chosen) if "sel" in _classes(s)] == [2, 6, 7]
    assert "nan" in _classes(chosen[4]) and "background-color" not in chosen[4].get("style", "")
    assert "rgb(33, 102, 172)" in chosen[6]["style"]  # -2.0 is beyond the p95 scale: saturated blue
    assert "dark" in _classes(chosen[2]) and "rgb(255, 255, 255)" in chosen[10]["style"]  # 0 -> white
    assert "rgb(178, 24, 43)" in chosen[8]["style"]  # +inf clamps to the end of the scale
    assert "special" in _classes(chosen[5]) and "special" in _classes(dom.side("rejected")[3])
    assert "special" not in _classes(chosen[6])  # "</script>..." is text, not a special token
    assert "score 1.5000" in chosen[2]["title"] and "selected yes" in chosen[2]["title"]
    assert "score nan" in chosen[4]["title"] and "score inf" in chosen[8]["title"]
    # XSS tokens stayed text: no <img> element, page title untouched
    assert "img" not in dom.tags and dom.tags.get("script") == 2
    assert dom.ids["title"]["text"] == "tokensift token scores"


@needs_chromium
def test_chromium_screenshot(page, tmp_path):
    out, _ = page
    shot = tmp_path / "shot.png"
    _chromium(out.as_uri() + "#pair=2", tmp_path, f"--screenshot={shot}", "--window-size=1280,900",
              "--hide-scrollbars")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert len(data) > 20_000, f"screenshot suspiciously small ({len(data)} bytes)"


@needs_chromium
def test_chromium_long_response_and_empty_side(page, tmp_path):
    out, pairs = page
    text = _chromium(out.as_uri() + "#pair=3", tmp_path, "--dump-dom")
    dom = _Dom(text)
    assert dom.ids["row"]["text"] == "40"
    assert len(dom.side("chosen")) == 1500 and dom.side("rejected") == []
    assert sum("sel" in _classes(s) for s in dom.side("chosen")) == 500
    assert "(empty response: 0 tokens)" in text
    assert "0 tokens · 0 selected" in text


@needs_chromium
def test_chromium_hash_is_clamped_and_global_scale(page, tmp_path):
    out, pairs = page
    dom = _Dom(_chromium(out.as_uri() + "#pair=999999&scale=global", tmp_path, "--dump-dom"))
    assert dom.ids["pos"]["text"] == f"pair {len(pairs)} of {len(pairs)}"
    assert dom.ids["row"]["text"] == str(pairs[-1]["row"])
    assert "all pairs" in dom.ids["scalenote"]["text"]


_DRIVER = """<script>
(function () {
  function key(k) { document.dispatchEvent(new KeyboardEvent("keydown", {key: k, bubbles: true})); }
  var log = [], pos = function () { log.push(document.getElementById("pos").textContent); };
  key("ArrowRight"); pos(); key("ArrowRight"); pos();
  document.getElementById("prev").click(); pos();
  var jump = document.getElementById("jump");
  jump.value = "7"; jump.dispatchEvent(new Event("change")); pos();
  key("ArrowLeft"); pos();
  document.querySelector('#rejected .tok[data-i="1"]').dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
  document.documentElement.setAttribute("data-log", log.join("|"));
  document.documentElement.setAttribute("data-hash", location.hash);
})();
</script>
</body>"""


@needs_chromium
def test_chromium_keyboard_buttons_jump_and_hover(page, tmp_path):
    """Drive the page's own handlers (keys, prev button, jump input, hover)
    from a script appended to a copy of the page, then read the DOM."""
    out, pairs = page
    n = len(pairs)
    driven = tmp_path / "driven.html"
    driven.write_text(out.read_text(encoding="utf-8").replace("</body>", _DRIVER), encoding="utf-8")
    dom = _Dom(_chromium(driven.as_uri() + "#pair=1", tmp_path, "--dump-dom"))
    assert dom.attrs["data-log"].split("|") == [f"pair {i} of {n}" for i in (2, 3, 2, 7, 6)]
    assert dom.attrs["data-hash"] == "#pair=6"  # the URL follows navigation (linkable)
    assert dom.ids["row"]["text"] == str(pairs[5]["row"])
    want = pairs[5]["rejected"]
    score = f"{want['scores'][1]:.4f}"
    assert dom.ids["info"]["text"] == f'rejected #1   " r1"   score {score}   selected no'


@needs_chromium
def test_chromium_empty_page(tmp_path):
    out = render_heatmap([], tmp_path / "empty.html")
    dom = _Dom(_chromium(out.as_uri() + "#pair=2", tmp_path, "--dump-dom"))
    assert dom.attrs.get("data-ready") == "1"
    assert "hidden" not in dom.ids["empty"]["attrs"] and dom.ids["empty"]["text"] == "no pairs"
    assert "hidden" in dom.ids["pair"]["attrs"]
    assert dom.ids["pos"]["text"] == "pair 0 of 0" and dom.spans == []


def _drive(path, js, tmp_path, suffix="", size=None):
    """Run ``js`` after the page's own script (appended to a copy of the page),
    then return the DOM; the driver reports through attributes on <html>."""
    driven = tmp_path / f"driven-{path.stem}.html"
    driven.write_text(path.read_text(encoding="utf-8").replace("</body>", f"<script>{js}</script>\n</body>"),
                      encoding="utf-8")
    extra = [f"--window-size={size}"] if size else []
    return _Dom(_chromium(driven.as_uri() + suffix, tmp_path, *extra, "--dump-dom"))


def _rgb(text):
    return [tuple(int(float(v)) for v in m) for m in re.findall(r"rgba?\(([\d.]+), ([\d.]+), ([\d.]+)", text)]


def _contrast(a, b):
    """WCAG contrast ratio of two sRGB colours."""
    def lum(c):
        lin = [v / 255 / 12.92 if v / 255 <= 0.03928 else ((v / 255 + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


_STYLE_PROBE = """
var out = [];
document.querySelectorAll("#chosen .tok.sel:not([data-cont])").forEach(function (e) {
  var s = getComputedStyle(e);
  out.push({i: e.getAttribute("data-i"), bg: s.backgroundColor, outline: [s.outlineStyle, s.outlineWidth, s.outlineColor],
            shadow: s.boxShadow, border: [s.borderTopStyle, s.borderTopWidth, s.borderTopColor]});
});
document.documentElement.setAttribute("data-styles", JSON.stringify(out));
"""


@needs_chromium
def test_chromium_selected_ring_contrasts_with_white_and_saturated_fills(tmp_path):
    """Finding 1: the key-token marking must show on white and on both saturated
    ends of the scale, so it needs two contrasting colours, not one dark line."""
    pair = {"row": 0, "prompt": "p", "chosen": _resp(["hot", " cold", " zero", " x"], [1.0, -1.0, 0.0, 0.5],
                                                     [True, True, True, False]),
            "rejected": _resp([], [], [])}
    out = render_heatmap([pair], tmp_path / "sel.html")
    styles = json.loads(_drive(out, _STYLE_PROBE, tmp_path).attrs["data-styles"])
    fills = [_rgb(s["bg"])[0] for s in styles]
    assert fills == [(178, 24, 43), (33, 102, 172), (255, 255, 255)]  # saturated red, saturated blue, white
    for s, fill in zip(styles, fills):
        marks = []
        if s["outline"][0] not in ("none", "hidden") and float(s["outline"][1][:-2]) >= 1.5:
            marks += _rgb(s["outline"][2])
        if s["border"][0] not in ("none", "hidden") and float(s["border"][1][:-2]) >= 1.5:
            marks += _rgb(s["border"][2])
        for shadow in re.findall(r"rgba?\([^)]*\)[^,]*", s["shadow"]):  # colour, offsets, blur, spread
            lengths = [float(v) for v in re.findall(r"(-?[\d.]+)px", shadow)]
            if len(lengths) == 4 and abs(lengths[3]) >= 1.5:
                marks += _rgb(shadow)
        assert len(set(marks)) >= 2, f"token {s['i']}: one marking colour only ({s})"
        best = max(_contrast(m, fill) for m in marks)
        assert best >= 4.5, f"token {s['i']} on {fill}: best marking contrast {best:.2f} < 4.5 ({s})"


_WS_TOKENS = ["\n", "\n\n", " ", "  ", "a\nb", "", "\t", "x\n", "\n  indented", " \n"]
_LAYOUT_PROBE = """
var bad = [], tops = {}, n = 0;
function inked(el, r) {
  var walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT), node, range = document.createRange();
  while ((node = walker.nextNode())) {
    for (var k = 0; k < node.data.length; k++) {
      if (/\\s/.test(node.data[k])) continue;
      range.setStart(node, k); range.setEnd(node, k + 1);
      var c = range.getBoundingClientRect(), x = (c.left + c.right) / 2, y = (c.top + c.bottom) / 2;
      if (x >= r.left && x <= r.right && y >= r.top && y <= r.bottom) return true;
    }
  }
  return false;
}
function mark(el) {
  return [getComputedStyle(el, "::before").content, getComputedStyle(el, "::after").content].some(function (c) {
    return c && c !== "none" && c !== "normal" && c !== '""';
  });
}
document.querySelectorAll("#chosen .tok").forEach(function (el) {
  n++;
  var rects = Array.prototype.slice.call(el.getClientRects()), text = el.textContent;
  rects.forEach(function (r) { tops[Math.round(r.top)] = 1; });
  if (/\\S/.test(text)) {
    rects.forEach(function (r, j) {
      if (!inked(el, r) && !(j === rects.length - 1 && mark(el)))
        bad.push(el.getAttribute("data-i") + ":" + JSON.stringify(text) + "@" + j);
    });
  } else if (rects.length !== 1 || !mark(el)) {
    bad.push(el.getAttribute("data-i") + ":" + JSON.stringify(text) + " x" + rects.length);
  }
});
document.documentElement.setAttribute("data-bad", JSON.stringify(bad));
document.documentElement.setAttribute("data-n", String(n));
document.documentElement.setAttribute("data-lines", String(Object.keys(tops).length));
var copied = [];
["chosen", "rejected"].forEach(function (side) {
  var sel = window.getSelection();
  sel.selectAllChildren(document.querySelector("#" + side + " .toks"));
  copied.push([sel.toString(), document.querySelector("#" + side + " .toks").textContent]);
});
document.documentElement.setAttribute("data-copied", JSON.stringify(copied));
"""


@needs_chromium
def test_chromium_no_blank_token_box_at_line_ends_and_text_is_faithful(tmp_path):
    """Finding 2: in a narrow column every line wraps; no fragment of a token's
    box may hold only blank space (a leading space that wrapped, a newline),
    and the response's DOM/copied text must still be the tokens' text."""
    words = [f" word{i}" for i in range(120)]
    for k, tok in enumerate(_WS_TOKENS):
        words.insert(7 + 11 * k, tok)
    pair = {"row": 0, "prompt": "p", "chosen": _resp(words, [((i * 13) % 9 - 4) / 4 for i in range(len(words))],
                                                     [i % 4 == 0 for i in range(len(words))]),
            "rejected": _resp(["No", " way", "\n", " at", " all"], [0.5, -1, 0.1, 0.2, -0.3], [1, 0, 1, 0, 0])}
    out = render_heatmap([pair], tmp_path / "ws.html")
    dom = _drive(out, _LAYOUT_PROBE, tmp_path, size="420,4000")
    assert int(dom.attrs["data-n"]) >= len(words) and int(dom.attrs["data-lines"]) > 20  # it did wrap
    assert json.loads(dom.attrs["data-bad"]) == []
    copied = json.loads(dom.attrs["data-copied"])
    for (selected, content), side in zip(copied, ("chosen", "rejected")):
        want = "".join(pair[side]["tokens"])
        assert content == want  # marks (newline, blank, empty) are CSS, not text
        assert selected == want  # what copy-paste gives


_SCALE_PROBE = """
var log = [];
function snap() {
  var bgs = Array.prototype.map.call(document.querySelectorAll("#chosen .tok, #rejected .tok"),
                                     function (e) { return e.style.backgroundColor; });
  log.push({pos: document.getElementById("pos").textContent, lo: document.getElementById("lo").textContent,
            hi: document.getElementById("hi").textContent, note: document.getElementById("scalenote").textContent,
            checked: document.getElementById("global").checked, hash: location.hash, bgs: bgs});
}
snap();
document.getElementById("global").click(); snap();
document.getElementById("global").click(); snap();
document.documentElement.setAttribute("data-log", JSON.stringify(log));
"""


@needs_chromium
def test_chromium_noise_pair_is_pale_on_the_default_global_scale(tmp_path):
    """Finding 3: opened without a scale in the URL, the noise pair is coloured
    on the scale of all pairs (near white) and the legend says so in numbers;
    the checkbox switches to the per-pair scale (vivid) and back."""
    pairs = _signal_and_noise()
    out = render_heatmap(pairs, tmp_path / "scale.html")
    g = _embedded(out)["scale"]["global"]
    log = json.loads(_drive(out, _SCALE_PROBE, tmp_path, "#pair=2").attrs["data-log"])
    default, per_pair, back = log
    assert default["pos"] == "pair 2 of 2" and default["checked"] is True
    assert (default["lo"], default["hi"]) == (f"-{g:.3g}", f"+{g:.3g}") and "all pairs" in default["note"]
    assert all(min(c) >= 250 for bg in default["bgs"] for c in _rgb(bg)), "noise must look faint"
    assert per_pair["checked"] is False and "this pair" in per_pair["note"] and per_pair["hash"] == "#pair=2&scale=pair"
    assert (per_pair["lo"], per_pair["hi"]) == ("-0.0005", "+0.0005")
    assert {(178, 24, 43), (33, 102, 172)} <= {c for bg in per_pair["bgs"] for c in _rgb(bg)}
    assert back["bgs"] == default["bgs"] and back["hash"] == "#pair=2"


_WRONG_PROBE = """
var log = [];
function snap() {
  var b = document.getElementById("wrongbadge"), n = document.getElementById("posbadge");
  log.push([document.getElementById("pos").textContent, b.hidden, b.textContent, n.hidden, n.textContent,
            document.getElementById("margin").textContent]);
}
snap();
document.getElementById("nextwrong").click(); snap();
document.getElementById("nextwrong").click(); snap();
document.getElementById("prevwrong").click(); snap();
document.documentElement.setAttribute("data-log", JSON.stringify(log));
document.documentElement.setAttribute("data-count", document.getElementById("wrongcount").textContent);
"""


@needs_chromium
def test_chromium_wrong_way_pairs_are_badged_counted_and_navigable(tmp_path):
    """Finding 4: margin (sum chosen - sum rejected, finite scores) <= 0 gets a
    badge with the margin in the pair view and next to the pair indicator."""
    nan = float("nan")
    pairs = [
        {"chosen": _resp("ab", [1.0, 2.0], [1, 0]), "rejected": _resp("d", [0.5], [1])},                 # +2.5
        {"chosen": _resp("abc", [0.5, nan, 0.25], [1, 0, 0]), "rejected": _resp("de", [1.0, nan], [1, 0])},  # -0.25
        {"chosen": _resp("a", [0.125], [0]), "rejected": _resp("d", [-0.125], [0])},                      # +0.25
        {"chosen": _resp("a", [0.5], [0]), "rejected": _resp("d", [0.5], [0])},                           # 0
    ]
    out = render_heatmap(pairs, tmp_path / "wrong.html")
    dom = _drive(out, _WRONG_PROBE, tmp_path, "#pair=1")
    assert dom.attrs["data-count"] == "2"
    first, second, third, fourth = json.loads(dom.attrs["data-log"])
    assert first[0] == "pair 1 of 4" and first[1] is True and first[3] is True and "+2.5" in first[5]
    assert second[0] == "pair 2 of 4" and second[1] is False and second[3] is False
    assert "oracle prefers the rejected answer" in second[2] and "-0.25" in second[2] and "-0.25" in second[4]
    assert third[0] == "pair 4 of 4" and third[1] is False and "margin 0" in third[2]
    assert fourth[0] == "pair 2 of 4"


@needs_chromium
def test_chromium_notebook_wrapper_keeps_tokens_as_text(tmp_path):
    """The iframe wrapper in a real browser: the outer document gets one
    sandboxed iframe and nothing from the tokens (no <img>, no script)."""
    page = viz.heatmap_html([_tricky_pair()])
    outer = tmp_path / "outer.html"
    outer.write_text("<!DOCTYPE html><html><head><title>nb</title></head><body>"
                     + viz.notebook_html(page, height=400) + "</body></html>", encoding="utf-8")
    text = _chromium(outer.as_uri(), tmp_path, "--dump-dom")
    dom = _Dom(text)
    assert dom.tags.get("iframe") == 1 and "img" not in dom.tags and "script" not in dom.tags
    assert "<title>nb</title>" in text
