"""HTML/CSS/JS template for :func:`tokensift.viz.heatmap.render_heatmap`.

Kept as a Python constant (not a package-data file) so the page ships with the
wheel without any pyproject change and can never go missing at run time.

Placeholders (replaced in one pass by ``heatmap.py``):

* ``__TS_TITLE__`` -- the HTML-escaped page title;
* ``__TS_DATA__``  -- the JSON document, with ``<``, ``>`` and ``&`` written
  as ``\\u003c``/``\\u003e``/``\\u0026`` so no token can close the script block.

Why the JS looks the way it does:

* all data reaches the DOM through ``textContent``/``setAttribute`` -- never
  ``innerHTML`` -- so tokens such as ``<img onerror=...>`` stay text;
* only the current pair is rendered (a DocumentFragment per response), so a
  file with thousands of pairs opens as fast as one with a single pair;
* nothing is fetched: no fonts, no CDN, no network, so it works from
  ``file://`` on an air-gapped machine;
* ``#pair=N`` (1-based, like the "pair i of n" indicator) selects the page,
  which makes pages linkable and lets a headless browser render any pair;
  ``&scale=global`` selects the global colour scale.  ``<html data-ready>``
  is set after the first render so tests can tell the script ran.
"""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TS_TITLE__</title>
<style>
:root { --neg: rgb(33,102,172); --pos: rgb(178,24,43); --ink: #1b1b1b; --muted: #666; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #f6f6f4;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { position: sticky; top: 0; z-index: 2; background: #fff; padding: 8px 16px;
         border-bottom: 1px solid #d8d8d8; }
h1 { font-size: 17px; margin: 0 0 4px; }
h2 { font-size: 15px; margin: 0 0 4px; }
#meta, .extra { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 0 0 6px;
                color: var(--muted); font-size: 12.5px; }
#meta b, .extra b { color: var(--ink); font-weight: 600; }
nav { display: flex; flex-wrap: wrap; align-items: center; gap: 8px; }
nav button { font: inherit; padding: 2px 10px; }
nav input[type=number] { width: 6em; font: inherit; }
#pos { font-weight: 600; min-width: 9em; text-align: center; }
#legend { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px; margin-top: 6px;
          font-size: 12.5px; color: var(--muted); }
.bar { display: inline-block; width: 220px; height: 12px; vertical-align: middle; border: 1px solid #bbb;
       background: linear-gradient(to right, var(--neg), #fff, var(--pos)); }
.ticks { display: inline-flex; justify-content: space-between; width: 220px; }
.sw { display: inline-block; padding: 0 5px; border-radius: 2px; color: var(--ink); background: #fff; }
main { padding: 10px 16px 60px; }
#empty { font-size: 18px; padding: 40px; text-align: center; color: var(--muted); }
.pairhead { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; }
.rowno { font-size: 16px; font-weight: 700; }
details { margin: 6px 0 10px; }
#prompt { background: #fff; border: 1px solid #ddd; padding: 6px 8px; margin: 4px 0 0; max-height: 14em;
          overflow: auto; white-space: pre-wrap; word-break: break-word; font-size: 12.5px; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
@media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
.resp { background: #fff; border: 1px solid #ddd; padding: 8px 10px; min-width: 0; }
.summary { font-size: 12.5px; color: var(--muted); margin-bottom: 6px; }
.toks { font: 13px/1.95 ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace;
        white-space: pre-wrap; overflow-wrap: anywhere; tab-size: 4; }
.tok { border-radius: 2px; padding: 1px 0; }
.tok.dark { color: #fff; }
.tok.sel { outline: 2px solid #111; outline-offset: -1px; }
.tok.special { border: 1px dashed #6a3d9a; font-style: italic; font-size: 0.88em; }
.tok.nan { background: repeating-linear-gradient(45deg, #c4c4c4 0 3px, #e4e4e4 3px 6px); }
.tok:focus { box-shadow: 0 0 0 2px #f0a202; outline-color: #f0a202; }
.none { color: var(--muted); font-style: italic; }
#info { position: fixed; left: 0; right: 0; bottom: 0; background: #222; color: #eee; padding: 5px 16px;
        font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace; white-space: pre; overflow: hidden;
        text-overflow: ellipsis; }
</style>
</head>
<body>
<header>
  <h1 id="title">__TS_TITLE__</h1>
  <div id="meta"></div>
  <nav>
    <button id="prev" type="button" title="previous pair (&#8592;)">&#8592; prev</button>
    <span id="pos">pair 0 of 0</span>
    <button id="next" type="button" title="next pair (&#8594;)">next &#8594;</button>
    <label>go to <input id="jump" type="number" min="1" step="1"></label>
    <label title="colour all pairs on one scale instead of per pair"><input id="global" type="checkbox"> global scale</label>
  </nav>
  <div id="legend">
    <span><span class="ticks"><span id="lo">-1</span><span>0</span><span id="hi">+1</span></span><br>
      <span class="bar"></span></span>
    <span id="scalenote"></span>
    <span class="sw tok sel">selected</span>
    <span class="sw tok special">special</span>
    <span class="sw tok nan">nan</span>
    <span>&#8629; newline &#8594; tab &#8709; empty</span>
  </div>
</header>
<main>
  <div id="empty" hidden>no pairs</div>
  <section id="pair" hidden>
    <div class="pairhead"><span class="rowno">row <span id="row"></span></span><div class="extra" id="extra"></div></div>
    <details open><summary>prompt</summary><pre id="prompt"></pre></details>
    <div class="cols">
      <section class="resp" id="chosen"><h2>chosen</h2><div class="summary"></div><div class="toks"></div></section>
      <section class="resp" id="rejected"><h2>rejected</h2><div class="summary"></div><div class="toks"></div></section>
    </div>
  </section>
</main>
<div id="info" aria-live="polite">hover or focus a token; &#8592;/&#8594; page through pairs</div>
<script type="application/json" id="ts-data">__TS_DATA__</script>
<script>
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("ts-data").textContent);
  var pairs = DATA.pairs || [], N = pairs.length, scales = DATA.scale || {};
  var NEG = [33, 102, 172], POS = [178, 24, 43];
  var SPECIAL = /^(?:<\|[^\s<>]{1,80}\|>|<\/?(?:s|pad|unk|mask|bos|eos|eot|sep|cls|start_of_turn|end_of_turn)>|<0x[0-9a-f]{2}>|\[\/?[A-Z][A-Z_]{1,20}\])$/i;
  var cur = 0, useGlobal = false;
  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }
  function num(v) {
    if (typeof v === "number") return v;
    if (v === "inf") return Infinity;
    if (v === "-inf") return -Infinity;
    return NaN;
  }
  function fmt(x) { return isNaN(x) ? "nan" : isFinite(x) ? x.toFixed(4) : (x > 0 ? "inf" : "-inf"); }
  function short(x) { return Number(x.toPrecision(3)).toString(); }
  function val(v) { return v !== null && typeof v === "object" ? JSON.stringify(v) : String(v); }
  function shown(t) {
    if (t === "") return "\u2205";
    return t.replace(/[\u0000-\u001f\u007f]/g, function (ch) {
      if (ch === "\n") return "\u21b5\n";
      if (ch === "\t") return "\u2192\t";
      var c = ch.charCodeAt(0);
      return String.fromCharCode(c === 127 ? 0x2421 : 0x2400 + c);
    });
  }
  function colour(s, scale) {
    var t = Math.max(-1, Math.min(1, s / scale)), end = t < 0 ? NEG : POS, a = Math.abs(t);
    var c = end.map(function (v) { return Math.round(255 + (v - 255) * a); });
    return { bg: "rgb(" + c.join(",") + ")", dark: a > 0.55 };
  }
  function kv(box, obj) {
    box.textContent = "";
    Object.keys(obj || {}).forEach(function (k) {
      var s = el("span");
      s.appendChild(el("span", null, k + ": "));
      s.appendChild(el("b", null, val(obj[k])));
      box.appendChild(s);
    });
  }
  function describe(side, i, sep) {
    var r = pairs[cur][side], t = String(r.tokens[i]), s = num(r.scores[i]);
    return [side + " #" + i, JSON.stringify(t), "score " + fmt(s),
      "selected " + (r.selected[i] ? "yes" : "no")].join(sep || "   ");
  }
  function renderSide(side, r, scale) {
    var sec = $(side), box = sec.querySelector(".toks"), frag = document.createDocumentFragment();
    var nSel = 0, sum = 0, sumSel = 0, bad = 0, n = r.tokens.length;
    for (var i = 0; i < n; i++) {
      var t = String(r.tokens[i]), s = num(r.scores[i]), on = !!r.selected[i];
      var sp = el("span", "tok", shown(t));
      sp.setAttribute("data-side", side);
      sp.setAttribute("data-i", String(i));
      sp.tabIndex = 0;
      if (on) { sp.classList.add("sel"); nSel++; }
      if (SPECIAL.test(t)) sp.classList.add("special");
      if (isNaN(s)) { sp.classList.add("nan"); }
      else { var c = colour(s, scale); sp.style.backgroundColor = c.bg; if (c.dark) sp.classList.add("dark"); }
      if (isFinite(s)) { sum += s; if (on) sumSel += s; } else { bad++; }
      sp.title = describe(side, i, "\n");
      frag.appendChild(sp);
    }
    if (!n) frag.appendChild(el("span", "none", "(empty response: 0 tokens)"));
    box.textContent = "";
    box.appendChild(frag);
    sec.querySelector(".summary").textContent = n + " tokens \u00b7 " + nSel + " selected \u00b7 \u03a3 score " +
      sum.toFixed(4) + " \u00b7 \u03a3 selected " + sumSel.toFixed(4) +
      (bad ? " \u00b7 " + bad + " non-finite skipped" : "");
  }
  function setHash() {
    var h = "#pair=" + (cur + 1) + (useGlobal ? "&scale=global" : "");
    if (location.hash === h) return;
    try { history.replaceState(null, "", h); } catch (e) { location.hash = h; }
  }
  function render() {
    $("pos").textContent = "pair " + (N ? cur + 1 : 0) + " of " + N;
    $("prev").disabled = cur <= 0;
    $("next").disabled = cur >= N - 1;
    $("jump").disabled = !N;
    if (!N) { $("empty").hidden = false; $("pair").hidden = true; return; }
    var p = pairs[cur];
    var scale = useGlobal ? scales.global : (scales.pairs || [])[cur];
    if (!(scale > 0)) scale = 1;
    $("jump").value = String(cur + 1);
    $("row").textContent = String(p.row);
    kv($("extra"), p.extra);
    $("prompt").textContent = p.prompt;
    renderSide("chosen", p.chosen, scale);
    renderSide("rejected", p.rejected, scale);
    $("lo").textContent = "-" + short(scale);
    $("hi").textContent = "+" + short(scale);
    $("scalenote").textContent = "colour scale \u00b1" + fmt(scale) + " = p" + Math.round(100 * (scales.quantile || 0.95)) +
      " |score| of " + (useGlobal ? "all pairs" : "this pair");
    $("pair").hidden = false;
  }
  function go(i) {
    if (!N) { render(); return; }
    i = Math.max(0, Math.min(N - 1, i | 0));
    cur = i;
    render();
    setHash();
  }
  function fromHash() {
    var h = location.hash, m = /(?:^#|&)pair=(-?\d+)/.exec(h);
    useGlobal = /(?:^#|&)scale=global\b/.test(h);
    $("global").checked = useGlobal;
    go(m ? parseInt(m[1], 10) - 1 : cur);
  }
  kv($("meta"), DATA.meta);
  $("prev").addEventListener("click", function () { go(cur - 1); });
  $("next").addEventListener("click", function () { go(cur + 1); });
  $("jump").addEventListener("change", function () { var v = parseInt(this.value, 10); if (!isNaN(v)) go(v - 1); });
  $("global").addEventListener("change", function () { useGlobal = this.checked; go(cur); });
  window.addEventListener("hashchange", fromHash);
  document.addEventListener("keydown", function (e) {
    var t = e.target, tag = t && t.tagName;
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (tag === "TEXTAREA" || (tag === "INPUT" && t.type !== "checkbox")) return;
    var step = { ArrowLeft: -1, ArrowRight: 1 }[e.key];
    if (e.key === "Home") { go(0); } else if (e.key === "End") { go(N - 1); } else if (step) { go(cur + step); } else { return; }
    e.preventDefault();
  });
  function hover(e) {
    var t = e.target;
    if (!t || !t.classList || !t.classList.contains("tok") || !t.hasAttribute("data-side")) return;
    $("info").textContent = describe(t.getAttribute("data-side"), parseInt(t.getAttribute("data-i"), 10));
  }
  ["chosen", "rejected"].forEach(function (side) {
    var box = $(side).querySelector(".toks");
    box.addEventListener("mouseover", hover);
    box.addEventListener("focusin", hover);
  });
  fromHash();
  document.documentElement.setAttribute("data-ready", "1");
})();
</script>
</body>
</html>
"""
