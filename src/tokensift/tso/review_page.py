"""The review page (served by tso/review_server.py): what it shows of each reviewed pair (`review_items`), and its
HTML, CSS and JS, one self-contained document, nothing fetched from the internet.

Model text arrives as HTML that tso/markdown.py rendered after escaping it; every other string (reviewer names,
notes, generator names) is set with textContent. The script and style carry the server's per-start nonce, the
only ones its Content-Security-Policy lets run. Keyboard: a / b (A or B is better), d (drop: a tie or both bad),
u (undo your last decision), j / k or the arrow keys (next / previous), v (show the judge and the prior), n (note),
t (colour the answers' tokens by their scores, when the page has them: token_scores=DIR).
"""

from __future__ import annotations

import random
from pathlib import Path

from tokensift.errors import UserError
from tokensift.tso.markdown import render
from tokensift.tso.review import order_verdicts

REASON_TEXT = {
    "inconsistent": "the judge's two presentation orders name different winners",
    "disagreement": "the judge confidently prefers the answer the prior ladder ranks lower",
    "ambiguous": "the judge hardly prefers either answer",
    "audit": "a random audit sample (the judge agrees with the prior ladder)",
}


def a_is_chosen(seed: int, pair_id: str) -> bool:
    """Which side the prior's chosen answer is shown on: seeded per pair, so a reload shows the same sides."""
    return random.Random(f"tso-review-sides:{seed}:{pair_id}").random() < 0.5


def _side(p_chosen: float | None, chosen_is_a: bool) -> float | None:
    """P(A is better) from P(prior's chosen is better)."""
    if p_chosen is None:
        return None
    return round(p_chosen if chosen_is_a else 1.0 - p_chosen, 6)


def page_item(pair, reason: str, round_index: int, prompt, seed: int, scores: dict | None = None) -> dict:
    """One pair as the page shows it. `hidden` is what the page reveals only on demand; `scores` (tso/
    review_scores.py: chosen / rejected -> tokens, scores) adds each side's tokens for the colour view."""
    chosen_is_a = a_is_chosen(seed, pair.pair_id)
    a, b = (pair.chosen, pair.rejected) if chosen_is_a else (pair.rejected, pair.chosen)
    orders = order_verdicts(pair.judge_detail)
    if orders is not None:  # (chosen shown first, chosen shown second) -> (A shown first, B shown first)
        first, second = orders
        orders = [_side(first, True), _side(second, True)] if chosen_is_a else [_side(second, False),
                                                                                  _side(first, False)]
    sides = {"a": {"html": render(a.text), "chars": len(a.text)}, "b": {"html": render(b.text), "chars": len(b.text)}}
    if scores:
        sides["a"].update(scores["chosen" if chosen_is_a else "rejected"])
        sides["b"].update(scores["rejected" if chosen_is_a else "chosen"])
    return {
        "id": pair.pair_id, "round": round_index, "reason": reason, "reason_text": REASON_TEXT.get(reason, reason),
        "prompt": [{"role": str(m.get("role", "")), "html": render(str(m.get("content", "")))}
                   for m in prompt.messages],
        **sides,
        "hidden": {"judge_p_a": _side(pair.judge_p, chosen_is_a), "orders_a": orders,
                   "prior_better": "a" if chosen_is_a else "b",
                   "a": {"generator": a.generator, "rank": a.prior_rank},
                   "b": {"generator": b.generator, "rank": b.prior_rank}},
    }


def review_items(config) -> tuple[list[dict], dict[str, bool], dict]:
    """Every reviewed pair of the run's judged rounds, decided or not (the page shows decisions beside them),
    pair_id -> whether A is the prior's chosen answer, and what the page's header needs of the token scores
    (`token_scores=DIR`: their colour scale, the heatmap's colours, how many pairs they cover)."""
    from tokensift.tso.loop import check_run_config, judged_rounds
    from tokensift.tso.prompts import prepare_prompts

    run_dir = Path(config.output_dir)
    if not check_run_config(config):
        raise UserError(f"{run_dir} holds no TSO run yet; start one with `tokensift tso run` first")
    records = prepare_prompts(config, started=True).records
    reviewed = {}
    for k, pairs, reasons in judged_rounds(run_dir, config):
        for pair in pairs:
            if pair.pair_id in reasons and pair.pair_id not in reviewed:
                reviewed[pair.pair_id] = (pair, reasons[pair.pair_id], k)
    scores, extra = {}, {}
    if config.token_scores:
        from tokensift.tso.review_scores import review_token_scores
        from tokensift.viz.heatmap import NEGATIVE_RGB, POSITIVE_RGB

        scores, scale, counts = review_token_scores(config.token_scores, {p: v[0] for p, v in reviewed.items()})
        extra = {"token_scale": scale, "token_colours": {"negative": NEGATIVE_RGB, "positive": POSITIVE_RGB},
                 "token_counts": counts}
    items = [page_item(pair, reason, k, records[pair.prompt_id], config.seed, scores.get(pair_id))
             for pair_id, (pair, reason, k) in reviewed.items()]
    return items, {pair_id: a_is_chosen(config.seed, pair_id) for pair_id in reviewed}, extra


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="__CSRF__">
<title>tokensift: TSO review</title>
<style nonce="__NONCE__">
:root { --ink: #1b1b1b; --muted: #666; --line: #ddd; --accent: #2166ac; --warn: #b2182b; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #f6f6f4; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; }
header { position: sticky; top: 0; z-index: 2; background: #fff; border-bottom: 1px solid var(--line);
         padding: 8px 16px; display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; }
header h1 { font-size: 16px; margin: 0 8px 0 0; }
header label, header span { font-size: 13px; color: var(--muted); }
#bar { width: 160px; height: 8px; background: #eee; border-radius: 4px; overflow: hidden; display: inline-block;
       vertical-align: middle; }
#barfill { height: 100%; width: 0; background: var(--accent); }
main { max-width: 1400px; margin: 0 auto; padding: 12px 16px 90px; }
.reason { margin: 4px 0 10px; font-size: 14px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #e8eef6; color: var(--accent);
         font-weight: 600; font-size: 12.5px; margin-right: 6px; }
.badge.round { background: #eee; color: var(--muted); }
.msg { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; margin-bottom: 6px; }
.role { font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 10px; }
.side { background: #fff; border: 2px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 0; }
.side h2 { font-size: 15px; margin: 0 0 4px; }
.side.picked { border-color: var(--accent); }
.md p { margin: 6px 0; } .md pre { background: #f3f3f0; padding: 8px; overflow-x: auto; border-radius: 4px; }
.md code { font: 13px/1.4 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.md :not(pre) > code { background: #f3f3f0; padding: 0 3px; border-radius: 3px; }
.empty { color: var(--muted); font-style: italic; }
#decide { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 12px 0; }
button { font: inherit; font-size: 14px; padding: 5px 12px; border: 1px solid #bbb; border-radius: 5px;
         background: #fff; cursor: pointer; }
button:hover { border-color: var(--accent); }
kbd { font: 12px ui-monospace, monospace; border: 1px solid #ccc; border-bottom-width: 2px; border-radius: 3px;
      padding: 0 4px; background: #fafafa; }
#note { flex: 1; min-width: 220px; font: inherit; font-size: 14px; padding: 5px 8px; border: 1px solid #bbb;
        border-radius: 5px; }
#current { font-size: 14px; margin: 6px 0; }
#current.conflict { color: var(--warn); font-weight: 600; }
#reveal { background: #fffbe8; border: 1px solid #e6d38a; border-radius: 6px; padding: 6px 12px; font-size: 14px; }
#status { position: fixed; left: 0; right: 0; bottom: 0; background: #222; color: #eee; padding: 5px 16px;
          font-size: 13px; }
#status.error { background: var(--warn); }
#status kbd { color: var(--ink); }
.pairid { font: 12px ui-monospace, monospace; color: var(--muted); }
#done { padding: 40px; text-align: center; color: var(--muted); font-size: 18px; }
.toks { white-space: pre-wrap; font: 13px/1.7 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.tok { border-radius: 2px; } .tok.dark { color: #fff; } .tok.nan { outline: 1px dashed #999; }
#legend { font-size: 13px; color: var(--muted); }
[hidden] { display: none !important; }
</style></head>
<body>
<header>
  <h1>TSO review</h1>
  <span id="progress">loading&hellip;</span><span id="bar"><span id="barfill"></span></span>
  <label>reason <select id="freason"><option value="">all</option></select></label>
  <label>round <select id="fround"><option value="">all</option></select></label>
  <label><input type="checkbox" id="fopen"> undecided only</label>
  <label>reviewer <input id="reviewer" size="10" maxlength="64"></label>
  <span id="position"></span>
  <button id="prev" title="previous (k, left arrow)">&larr;</button><button id="next" title="next (j, right arrow)">&rarr;</button>
</header>
<main>
  <div id="pair" hidden>
    <div class="reason"><span class="badge" id="reason"></span><span class="badge round" id="round"></span>
      <span id="reasontext"></span> <span id="pairid" class="pairid"></span></div>
    <div id="prompt"></div>
    <div class="sides">
      <section class="side" id="sidea"><h2>A</h2><div class="md" id="texta"></div></section>
      <section class="side" id="sideb"><h2>B</h2><div class="md" id="textb"></div></section>
    </div>
    <div id="decide">
      <button id="choosea"><kbd>a</kbd> A is better</button>
      <button id="chooseb"><kbd>b</kbd> B is better</button>
      <button id="choosedrop"><kbd>d</kbd> drop (tie or both bad)</button>
      <button id="undo"><kbd>u</kbd> undo my last</button>
      <input id="note" placeholder="optional note (n), sent with the decision" maxlength="2000">
      <button id="toggle"><kbd>v</kbd> judge &amp; prior</button>
      <button id="colours" hidden><kbd>t</kbd> token scores</button> <span id="legend" hidden></span>
    </div>
    <div id="current"></div>
    <div id="reveal" hidden></div>
  </div>
  <div id="done" hidden></div>
</main>
<div id="status">keys: <kbd>a</kbd> <kbd>b</kbd> <kbd>d</kbd> decide, <kbd>u</kbd> undo, <kbd>j</kbd>/<kbd>k</kbd> next/previous,
  <kbd>v</kbd> judge &amp; prior, <kbd>n</kbd> note</div>
<script nonce="__NONCE__">
(function () {
  "use strict";
  var CSRF = document.querySelector('meta[name="csrf"]').content;
  if (location.search.indexOf("token=") >= 0) {  // the cookie carries it from now on
    history.replaceState(null, "", location.pathname + location.hash);
  }
  var $ = function (id) { return document.getElementById(id); };
  var data = null, byId = {}, view = [], current = null, reveal = false, pending = 0, queue = Promise.resolve();
  var colours = false;
  var reviewerBox = $("reviewer");
  reviewerBox.value = localStorage.getItem("tokensift-reviewer") || "reviewer";
  reviewerBox.addEventListener("change", function () {
    localStorage.setItem("tokensift-reviewer", reviewer()); render();
  });
  function reviewer() { return (reviewerBox.value || "").trim() || "reviewer"; }
  function status(text, bad) { $("status").textContent = text; $("status").className = bad ? "error" : ""; }
  function rid() { return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12); }

  function post(path, body) {
    body.reviewer = reviewer();
    body.request_id = rid();  // a retry of this request is recorded once
    var attempt = function (left) {
      return fetch(path, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                          headers: {"Content-Type": "application/json", "X-CSRF-Token": CSRF}})
        .then(function (r) {
          return r.json().then(function (j) { if (!r.ok) { throw new Error(j.error || r.status); } return j; });
        }, function (err) {
          if (left > 0) { return new Promise(function (ok) { setTimeout(ok, 500); }).then(function () { return attempt(left - 1); }); }
          throw err;
        });
    };
    return attempt(3);
  }

  function fill(select, values) {
    values.forEach(function (v) { var o = document.createElement("option"); o.value = o.textContent = v; select.appendChild(o); });
  }
  function load() {
    return fetch("api/pairs", {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) { throw new Error("the server refused (" + r.status + "): open the URL it printed"); }
      return r.json();
    }).then(function (d) {
      data = d;
      d.pairs.forEach(function (p) { byId[p.id] = p; });
      fill($("freason"), d.reasons.filter(function (r) { return d.pairs.some(function (p) { return p.reason === r; }); }));
      fill($("fround"), d.meta.rounds.map(String));
      var wanted = (location.hash.match(/pair=([0-9a-f]+)/) || [])[1];
      refilter(wanted && byId[wanted] ? wanted : null);
    }).catch(function (e) { status(String(e.message || e), true); });
  }
  function decided(id) { return !!(data.states[id] && data.states[id].decision); }
  function refilter(keep) {
    var reason = $("freason").value, round = $("fround").value, open = $("fopen").checked;
    view = data.pairs.filter(function (p) {
      return (!reason || p.reason === reason) && (!round || String(p.round) === round) && (!open || !decided(p.id) || p.id === keep);
    }).map(function (p) { return p.id; });
    if (keep && view.indexOf(keep) >= 0) { current = keep; }
    else { current = view.filter(function (id) { return !decided(id); })[0] || view[0] || null; }  // where the reviewer left off
    render();
  }
  ["freason", "fround", "fopen"].forEach(function (id) { $(id).addEventListener("change", function () { refilter(current); }); });

  function vote(v) {
    var what = v.choice === "a" ? "A is better" : v.choice === "b" ? "B is better" : v.choice === "drop" ? "drop" : v.decision;
    return v.reviewer + ": " + what + (v.note ? " (" + v.note + ")" : "");
  }
  function render() {
    var total = data.pairs.length, done = data.pairs.filter(function (p) { return decided(p.id); }).length;
    var conflicts = data.pairs.filter(function (p) { return data.states[p.id] && data.states[p.id].conflict; }).length;
    $("progress").textContent = "decided " + done + " of " + total + (conflicts ? ", " + conflicts + " in conflict" : "")
      + (pending ? ", saving " + pending + "\\u2026" : "");
    $("barfill").style.width = (total ? 100 * done / total : 0) + "%";
    $("pair").hidden = !current; $("done").hidden = !!current;
    if (!current) { $("done").textContent = total ? "No pair in this filter." : "This run has no pairs to review."; $("position").textContent = ""; return; }
    var p = byId[current], state = data.states[current] || {votes: []};
    $("position").textContent = "pair " + (view.indexOf(current) + 1) + " of " + view.length;
    history.replaceState(null, "", "#pair=" + current);
    $("reason").textContent = p.reason; $("round").textContent = "round " + p.round;
    $("reasontext").textContent = p.reason_text; $("pairid").textContent = p.id;
    var prompt = $("prompt"); prompt.textContent = "";
    p.prompt.forEach(function (m) {
      var box = document.createElement("div"), role = document.createElement("div"), body = document.createElement("div");
      box.className = "msg"; role.className = "role"; body.className = "md";
      role.textContent = m.role; body.innerHTML = m.html;  // server-rendered: escaped first (tso/markdown.py)
      box.appendChild(role); box.appendChild(body); prompt.appendChild(box);
    });
    var scored = !!(p.a.tokens && p.b.tokens);
    $("colours").hidden = !scored; $("legend").hidden = !(scored && colours);
    if (scored) { $("legend").textContent = "blue < 0 < red, scale \u00b1" + data.meta.token_scale.toPrecision(3); }
    ["a", "b"].forEach(function (s) {
      var el = $("text" + s);
      el.className = "md";
      if (scored && colours) { tokensInto(el, p[s]); } else if (p[s].html) { el.innerHTML = p[s].html; } else { el.innerHTML = ""; var e = document.createElement("span"); e.className = "empty"; e.textContent = "(empty answer)"; el.appendChild(e); }
      var mine = state.votes.filter(function (v) { return v.reviewer === reviewer(); })[0];
      $("side" + s).className = "side" + (mine && mine.choice === s ? " picked" : "");
    });
    var cur = $("current");
    cur.className = state.conflict ? "conflict" : "";
    cur.textContent = !state.votes.length ? "undecided" : (state.conflict
      ? "conflict: " + state.votes.map(vote).join("; ") + ". The decisions file holds drop until you decide again (your decision resolves it)."
      : "decided (" + state.decision + "): " + state.votes.map(vote).join("; "));
    var panel = $("reveal"); panel.hidden = !reveal; panel.textContent = "";
    if (reveal) {
      var h = p.hidden, lines = [];
      lines.push(h.judge_p_a === null ? "judge: no verdict" : "judge: P(A is better) = " + h.judge_p_a.toFixed(3));
      if (h.orders_a) { lines.push("asked in both orders: P(A is better) = " + h.orders_a[0].toFixed(3) + " with A shown first, " + h.orders_a[1].toFixed(3) + " with B shown first"); }
      var up = h.prior_better, down = up === "a" ? "b" : "a";
      lines.push("prior ladder: " + up.toUpperCase() + " (" + h[up].generator + ", rank " + h[up].rank + ") above "
        + down.toUpperCase() + " (" + h[down].generator + ", rank " + h[down].rank + "); keep = " + up.toUpperCase() + " is better, flip = " + down.toUpperCase() + " is better");
      lines.forEach(function (t) { var d = document.createElement("div"); d.textContent = t; panel.appendChild(d); });
    }
  }
  function colour(s, scale) {  // the heatmap's scale: viz/heatmap.py NEGATIVE_RGB (-scale), white (0), POSITIVE_RGB
    var t = Math.max(-1, Math.min(1, s / scale)), ends = data.meta.token_colours, a = Math.abs(t);
    var end = t < 0 ? ends.negative : ends.positive;
    return {bg: "rgb(" + end.map(function (v) { return Math.round(255 + (v - 255) * a); }).join(",") + ")", dark: a > 0.55};
  }
  function tokensInto(el, side) {
    el.textContent = ""; el.className = "toks";
    side.tokens.forEach(function (t, i) {
      var sp = document.createElement("span"), s = side.scores[i];
      sp.className = "tok"; sp.textContent = t;  // token text: never markup
      if (s === null) { sp.classList.add("nan"); sp.title = "score nan"; }
      else { var c = colour(s, data.meta.token_scale); sp.style.backgroundColor = c.bg; if (c.dark) { sp.classList.add("dark"); } sp.title = "score " + s.toFixed(4); }
      el.appendChild(sp);
    });
  }
  function move(step) {
    if (!view.length) { return; }
    var i = view.indexOf(current);
    current = view[(i + step + view.length) % view.length]; reveal = false; render();
  }
  function nextOpen(from) {
    var i = view.indexOf(from);
    for (var k = 1; k <= view.length; k++) { var id = view[(i + k) % view.length]; if (!decided(id)) { return id; } }
    return view[(i + 1) % view.length];
  }
  function settle(j) {
    data.states[j.pair_id] = j.state; pending--; render();
  }
  function choose(choice) {
    if (!current) { return; }
    var id = current, note = $("note").value;
    $("note").value = ""; pending++;
    queue = queue.then(function () {
      return post("api/decide", {pair_id: id, choice: choice, note: note}).then(function (j) {
        settle(j); status("saved: pair " + id + " (" + j.state.decision + "), decision " + j.seq);
      }, function (e) { pending--; render(); status("not saved: " + (e.message || e), true); });
    });
    current = nextOpen(id); reveal = false;
    if ($("fopen").checked) { refilter(current); } else { render(); }
  }
  function undo() {
    queue = queue.then(function () {
      var mine = [];
      Object.keys(data.states).forEach(function (id) {
        data.states[id].votes.forEach(function (v) { if (v.reviewer === reviewer() && v.choice) { mine.push(v); } });
      });
      if (!mine.length) { status("nothing of yours to undo"); return; }
      mine.sort(function (x, y) { return y.seq - x.seq; });
      pending++;
      return post("api/undo", {seq: mine[0].seq}).then(function (j) {
        settle(j); current = j.pair_id; refilter(current); status("undone: decision " + mine[0].seq + " on pair " + j.pair_id);
      }, function (e) { pending--; render(); status("undo failed: " + (e.message || e), true); });
    });
  }
  $("choosea").onclick = function () { choose("a"); };
  $("chooseb").onclick = function () { choose("b"); };
  $("choosedrop").onclick = function () { choose("drop"); };
  $("undo").onclick = undo;
  $("prev").onclick = function () { move(-1); };
  $("next").onclick = function () { move(1); };
  $("toggle").onclick = function () { reveal = !reveal; render(); };
  $("colours").onclick = function () { colours = !colours; render(); };
  document.addEventListener("keydown", function (e) {
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") { if (e.key === "Escape") { e.target.blur(); } return; }
    if (e.ctrlKey || e.metaKey || e.altKey || !data) { return; }
    var act = {a: function () { choose("a"); }, "1": function () { choose("a"); }, b: function () { choose("b"); },
               "2": function () { choose("b"); }, d: function () { choose("drop"); }, "0": function () { choose("drop"); },
               u: undo, j: function () { move(1); }, ArrowRight: function () { move(1); }, k: function () { move(-1); },
               ArrowLeft: function () { move(-1); }, v: function () { reveal = !reveal; render(); },
               n: function () { $("note").focus(); }, t: function () { colours = !colours; render(); }}[e.key];
    if (act) { e.preventDefault(); act(); }
  });
  window.tsoReview = {idle: function () { return queue.then(function () { return pending; }); }};  // for tests
  load();
})();
</script>
</body></html>
"""


def page_html(csrf: str, nonce: str) -> str:
    """The page with this server's CSRF token and CSP nonce (both URL-safe base64: nothing to escape)."""
    return PAGE.replace("__CSRF__", csrf).replace("__NONCE__", nonce)
