"""A small, safe Markdown renderer for model text on the review page (`tokensift tso review --serve`).

Model answers are untrusted text. Every piece of the input is HTML-escaped (`html.escape`, quotes included)
before any markup is added, and the renderer only adds tags it writes itself, none with an attribute that holds
input text except a code fence's language, which is reduced to [A-Za-z0-9_+-]. So `<script>`, `<img onerror=...>`
or `</code>` in an answer always reach the page as visible text. Links and images are not rendered: their
Markdown stays text, so no URL from a model ever becomes clickable.

What it renders (enough to read chat answers side by side):
- fenced code blocks (``` or ~~~, an unclosed fence runs to the end), shown verbatim in <pre><code>;
- inline code (`x`), kept verbatim (no emphasis inside);
- unordered (-, *, +) and ordered (1. or 1)) list items, one level;
- **strong**, *em* and _em_;
- paragraphs separated by blank lines, single newlines inside a paragraph kept as <br>.
"""

from __future__ import annotations

import html
import re

FENCE = re.compile(r"^\s{0,3}(```|~~~)\s*([^\s`]*)")
ITEM = re.compile(r"^\s{0,3}(?:([-*+])|(\d{1,9})[.)])\s+(.*)$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
STRONG = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
EM_STAR = re.compile(r"(?<![\w*])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])")
EM_UNDERSCORE = re.compile(r"(?<![\w_])_(?=[^\s_])(.+?)(?<=[^\s_])_(?![\w_])")
LANGUAGE = re.compile(r"[^A-Za-z0-9_+-]")


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def inline(text: str) -> str:
    """One line or paragraph: escaped, then code spans, strong and emphasis (never inside code)."""
    out = []
    last = 0
    for match in CODE_SPAN.finditer(text):
        out.append(_emphasis(escape(text[last:match.start()])))
        out.append(f"<code>{escape(match.group(2).strip(' ') or match.group(2))}</code>")
        last = match.end()
    out.append(_emphasis(escape(text[last:])))
    return "".join(out)


def _emphasis(escaped: str) -> str:
    escaped = STRONG.sub(r"<strong>\1</strong>", escaped)
    escaped = EM_STAR.sub(r"<em>\1</em>", escaped)
    return EM_UNDERSCORE.sub(r"<em>\1</em>", escaped)


def render(text: str) -> str:
    """HTML for `text` (see the module docstring); the empty string for empty text."""
    lines = (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    paragraph: list[str] = []
    list_tag: str | None = None

    def close_paragraph():
        if paragraph:
            out.append("<p>" + "<br>".join(inline(line) for line in paragraph) + "</p>")
            paragraph.clear()

    def close_list():
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            close_paragraph()
            close_list()
            marker, language = fence.group(1), LANGUAGE.sub("", fence.group(2))[:20]
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(marker):
                body.append(lines[i])
                i += 1
            i += 1  # the closing fence (or past the end)
            attr = f' class="lang-{language}"' if language else ""
            out.append(f"<pre><code{attr}>{escape(chr(10).join(body))}</code></pre>")
            continue
        item = ITEM.match(line)
        if item:
            close_paragraph()
            tag = "ul" if item.group(1) else "ol"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{inline(item.group(3))}</li>")
        elif not line.strip():
            close_paragraph()
            close_list()
        else:
            if list_tag and line.startswith((" ", "\t")) and out[-1].endswith("</li>"):
                out[-1] = out[-1][:-5] + "<br>" + inline(line.strip()) + "</li>"  # a wrapped list item
            else:
                close_list()
                paragraph.append(line)
        i += 1
    close_paragraph()
    close_list()
    return "".join(out)
