"""HTML/CSS/JS template for :func:`tokensift.viz.heatmap.render_heatmap`.

Kept as a Python constant (not a package-data file) so the page ships with the
wheel without any pyproject change and can never go missing at run time.

Placeholders (replaced in one pass by ``heatmap.py``):

* ``__TS_TITLE__`` -- the HTML-escaped page title;
* ``__TS_DATA__``  -- the JSON document, with ``<``, ``>`` and ``&`` written
  as ``\\u003c``/``\\u003e``/``\\u0026`` so no token can close the script block;
* ``__TS_LO__``/``__TS_HI__``/``__TS_NOTE__`` -- the legend of the default
  colour scale, ``__TS_WRONG__``/``__TS_NPAIRS__`` -- how many pairs the
  oracle ranks the wrong way round, of how many (plain text; numbers only),
  so the page's magnitudes read right before (or without) its script.

Why the JS looks the way it does:

* all data reaches the DOM through ``textContent``/``setAttribute`` -- never
  ``innerHTML`` -- so tokens such as ``<img onerror=...>`` stay text;
* only the current pair is rendered (a DocumentFragment per response), so a
  file with thousands of pairs opens as fast as one with a single pair;
* whitespace: a line's leading spaces and every newline are plain text
  *between* the token boxes, so a wrap never leaves a box holding only blank
  space at a line end; the newline mark, the blank-token dot and the empty-token
  mark are CSS-generated (``::before``/``::after``), which copying leaves out,
  so the DOM text -- and a copied response -- is the tokens' own text;
* selected (key) tokens get a black ring outside a white one: one of the two
  contrasts with any fill (white, saturated red or blue), even at 1x zoom;
* nothing is fetched: no fonts, no CDN, no network, so it works from
  ``file://`` on an air-gapped machine and inside a sandboxed ``srcdoc`` iframe;
* ``#pair=N`` (1-based, like the "pair i of n" indicator) selects the page,
  which makes pages linkable and lets a headless browser render any pair;
  ``&scale=pair`` / ``&scale=global`` override the default colour scale.
  ``<html data-ready>`` is set after the first render so tests can tell the
  script ran.
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
/* key tokens: a black ring outside a white one -- one of the two contrasts with any fill (white, saturated red
   or blue; >= 4.5:1), at 1x zoom too */
.tok.sel { outline: 2px solid #000; outline-offset: 0; box-shadow: inset 0 0 0 2px #fff;
           padding: 1px 2px; margin: 0 2px; }
.tok.special { border: 1px dashed #6a3d9a; font-style: italic; font-size: 0.88em; }
.tok.nan { background: repeating-linear-gradient(45deg, #c4c4c4 0 3px, #e4e4e4 3px 6px); }
.tok:focus { outline: 3px solid #f0a202; outline-offset: 1px; }
/* markers drawn by CSS are not part of the text, so copying a response gives the tokens' own text */
.tok.nl::after { content: attr(data-nl); opacity: 0.75; }
.tok.empty::before { content: "\2205"; }
.tok.blank { display: inline-block; white-space: pre; position: relative; min-width: 0.6em; line-height: normal; }
.tok.blank::before { content: attr(data-mark); position: absolute; left: 0; right: 0; text-align: center;
                     opacity: 0.75; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12.5px; font-weight: 600;
         background: #fff3cd; color: #6b4a00; border: 1px solid #d49b00; }
.badge[hidden] { display: none; }
#oraclecheck { font-size: 12.5px; color: var(--muted); margin: 0 0 6px; }
#oraclecheck b { color: var(--ink); }
.margin { font-size: 12.5px; color: var(--muted); }
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
  <div id="oraclecheck">oracle prefers the rejected answer (reward margin &#8804; 0) in <b id="wrongcount">__TS_WRONG__</b>
    of __TS_NPAIRS__ pairs <button id="prevwrong" type="button">&#8592; previous such pair</button>
    <button id="nextwrong" type="button">next such pair &#8594;</button></div>
  <nav>
    <button id="prev" type="button" title="previous pair (&#8592;)">&#8592; prev</button>
    <span id="pos">pair 0 of 0</span>
    <button id="next" type="button" title="next pair (&#8594;)">next &#8594;</button>
    <label>go to <input id="jump" type="number" min="1" step="1"></label>
    <span class="badge wrongway" id="posbadge" hidden
          title="the oracle's reward margin (chosen - rejected) is not positive">&#9888; wrong way round</span>
    <label title="on: one colour scale for all pairs (so noise looks faint); off: each pair on its own scale">
      <input id="global" type="checkbox"> global scale</label>
  </nav>
  <div id="legend">
    <span><span class="ticks"><span id="lo">__TS_LO__</span><span>0</span><span id="hi">__TS_HI__</span></span><br>
      <span class="bar"></span></span>
    <span id="scalenote">__TS_NOTE__</span>
    <span class="sw tok sel">selected</span>
    <span class="sw tok special">special</span>
    <span class="sw tok nan">nan</span>
    <span>&#8629; newline &#183; blank token &#8709; empty</span>
  </div>
</header>
<main>
  <div id="empty" hidden>no pairs</div>
  <section id="pair" hidden>
    <div class="pairhead"><span class="rowno">row <span id="row"></span></span>
      <span class="margin" id="margin"></span>
      <span class="badge wrongway" id="wrongbadge" hidden></span>
      <div class="extra" id="extra"></div></div>
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
  var pairs = DATA.pairs || [], N = pairs.length, scales = DATA.scale || {}, margins = DATA.margins || [];
  var NEG = [33, 102, 172], POS = [178, 24, 43];
  var SPECIAL = /^(?:<\|[^\s<>]{1,80}\|>|<\/?(?:s|pad|unk|mask|bos|eos|eot|sep|cls|start_of_turn|end_of_turn)>|<0x[0-9a-f]{2}>|\[\/?[A-Z][A-Z_]{1,20}\])$/i;
  var DEFAULT = scales["default"] === "pair" ? "pair" : "global";
  var cur = 0, mode = DEFAULT, wrong = [];
  for (var w = 0; w < N; w++) if (!(num(margins[w]) > 0)) wrong.push(w);
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
  // 3 significant digits, as Python's "%.3g" (heatmap.py writes the first legend with that)
  function short(x) {
    if (!isFinite(x)) return fmt(x);
    var r = Number(x.toPrecision(3));
    if (r === 0) return "0";
    var e = Math.floor(Math.log10(Math.abs(r)));
    if (e >= -4 && e < 3) return r.toString();
    return r.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
  }
  function signed(x) { return (x > 0 ? "+" : "") + short(x); }
  function val(v) { return v !== null && typeof v === "object" ? JSON.stringify(v) : String(v); }
  // control characters other than tab/newline as their visible "control picture"
  function ctl(t) {
    return t.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, function (ch) {
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
  // One token -> boxes (coloured spans) and plain text between them.  A line's leading spaces/tabs and every
  // newline stay outside the boxes (so a wrap or line end never leaves a box holding only blank space); a
  // newline shows as a CSS "\u21b5" after its box, a blank-only piece as an unbreakable box with a centred mark,
  // "" as a CSS "\u2205".  The DOM text is the token text, so a copied response is the response.
  function tokenInto(frag, t, make) {
    var parts = t.split(/(\r?\n)/), boxes = 0;
    function box(text, kind, nl) {
      var sp = make(boxes++, ctl(text));
      if (kind) sp.classList.add(kind);
      if (kind === "blank") sp.setAttribute("data-mark", /\t/.test(text) ? "\u2192" : "\u00b7");
      if (nl) { sp.classList.add("nl"); sp.setAttribute("data-nl", "\u21b5"); }
      frag.appendChild(sp);
    }
    for (var j = 0; j < parts.length; j += 2) {
      var line = parts[j], nl = parts[j + 1], lead = /^[ \t]*/.exec(line)[0], rest = line.slice(lead.length);
      if (rest) {
        if (lead) frag.appendChild(document.createTextNode(lead));
        box(rest, "", nl);
      } else if (lead) {
        box(lead, "blank", nl);
      } else if (nl) {
        box("", "", nl);
      }
      if (nl) frag.appendChild(document.createTextNode(nl));
    }
    if (!boxes) box("", "empty", null);
  }
  function renderSide(side, r, scale) {
    var sec = $(side), box = sec.querySelector(".toks"), frag = document.createDocumentFragment();
    var nSel = 0, sum = 0, sumSel = 0, bad = 0, n = r.tokens.length;
    for (var i = 0; i < n; i++) {
      var t = String(r.tokens[i]), s = num(r.scores[i]), on = !!r.selected[i];
      var c = isNaN(s) ? null : colour(s, scale), tip = describe(side, i, "\n"), special = SPECIAL.test(t);
      tokenInto(frag, t, function (k, text) {
        var sp = el("span", "tok", text);
        sp.setAttribute("data-side", side);
        sp.setAttribute("data-i", String(i));
        if (k) sp.setAttribute("data-cont", String(k)); else sp.tabIndex = 0;
        if (on) sp.classList.add("sel");
        if (special) sp.classList.add("special");
        if (!c) { sp.classList.add("nan"); }
        else { sp.style.backgroundColor = c.bg; if (c.dark) sp.classList.add("dark"); }
        sp.title = tip;
        return sp;
      });
      if (on) nSel++;
      if (isFinite(s)) { sum += s; if (on) sumSel += s; } else { bad++; }
    }
    if (!n) frag.appendChild(el("span", "none", "(empty response: 0 tokens)"));
    box.textContent = "";
    box.appendChild(frag);
    sec.querySelector(".summary").textContent = n + " tokens \u00b7 " + nSel + " selected \u00b7 \u03a3 score " +
      sum.toFixed(4) + " \u00b7 \u03a3 selected " + sumSel.toFixed(4) +
      (bad ? " \u00b7 " + bad + " non-finite skipped" : "");
  }
  function setHash() {
    var h = "#pair=" + (cur + 1) + (mode !== DEFAULT ? "&scale=" + mode : "");
    if (location.hash === h) return;
    try { history.replaceState(null, "", h); } catch (e) { try { location.hash = h; } catch (e2) { /* sandboxed */ } }
  }
  function render() {
    $("pos").textContent = "pair " + (N ? cur + 1 : 0) + " of " + N;
    $("prev").disabled = cur <= 0;
    $("next").disabled = cur >= N - 1;
    $("jump").disabled = !N;
    $("prevwrong").disabled = !wrong.length || wrong[0] >= cur;
    $("nextwrong").disabled = !wrong.length || wrong[wrong.length - 1] <= cur;
    $("global").checked = mode === "global";
    if (!N) { $("empty").hidden = false; $("pair").hidden = true; $("posbadge").hidden = true; return; }
    var p = pairs[cur], pairScale = (scales.pairs || [])[cur];
    var scale = mode === "global" ? scales.global : pairScale;
    if (!(scale > 0)) scale = 1;
    $("jump").value = String(cur + 1);
    $("row").textContent = String(p.row);
    kv($("extra"), p.extra);
    $("prompt").textContent = p.prompt;
    renderSide("chosen", p.chosen, scale);
    renderSide("rejected", p.rejected, scale);
    var m = num(margins[cur]), bad = !(m > 0);
    $("margin").textContent = "oracle margin " + signed(m) + " (\u03a3 chosen \u2212 \u03a3 rejected)";
    $("wrongbadge").hidden = !bad;
    $("wrongbadge").textContent = bad ? "\u26a0 oracle " + (m < 0 ? "prefers the rejected answer"
      : "does not prefer the chosen answer") + " (margin " + signed(m) + ")" : "";
    $("posbadge").hidden = !bad;
    $("posbadge").textContent = bad ? "\u26a0 wrong way round (" + signed(m) + ")" : "";
    $("lo").textContent = "-" + short(scale);
    $("hi").textContent = "+" + short(scale);
    $("scalenote").textContent = "colour scale \u00b1" + short(scale) + " = p" +
      Math.round(100 * (scales.quantile || 0.95)) + " |score| of " +
      (mode === "global" ? "all pairs (" + N + "; this pair alone: \u00b1" + short(pairScale) + ")" : "this pair");
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
    var h = location.hash, m = /(?:^#|&)pair=(-?\d+)/.exec(h), s = /(?:^#|&)scale=(global|pair)\b/.exec(h);
    mode = s ? s[1] : DEFAULT;
    go(m ? parseInt(m[1], 10) - 1 : cur);
  }
  function stepWrong(dir) {
    var list = dir > 0 ? wrong : wrong.slice().reverse();
    for (var k = 0; k < list.length; k++) if (dir > 0 ? list[k] > cur : list[k] < cur) { go(list[k]); return; }
  }
  kv($("meta"), DATA.meta);
  $("wrongcount").textContent = String(wrong.length);
  $("prev").addEventListener("click", function () { go(cur - 1); });
  $("next").addEventListener("click", function () { go(cur + 1); });
  $("prevwrong").addEventListener("click", function () { stepWrong(-1); });
  $("nextwrong").addEventListener("click", function () { stepWrong(1); });
  $("jump").addEventListener("change", function () { var v = parseInt(this.value, 10); if (!isNaN(v)) go(v - 1); });
  $("global").addEventListener("change", function () { mode = this.checked ? "global" : "pair"; go(cur); });
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
