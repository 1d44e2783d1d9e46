// A small Markdown renderer for run notes that builds DOM nodes (never innerHTML): raw HTML stays visible text.
// Paragraphs (a single newline is a line break, as in GitHub comments), headings, lists, code blocks, inline
// code, emphasis and links (http, https and mailto only).

const SAFE_URL = /^(https?:\/\/|mailto:)/i;

function el(tag, children = [], attrs = {}) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

/** Inline spans: `code`, **strong**, *em* / _em_, [text](url), bare http(s) links; everything else is text. */
export function inline(text) {
  const out = [];
  // Underscores emphasise only whole words: `window.__name__` and snake_case stay text.
  const pattern = /`([^`]+)`|\*\*(.+?)\*\*|(?<!\w)__(\S(?:.*?\S)?)__(?!\w)|\*([^*\s](?:[^*]*[^*\s])?)\*|(?<!\w)_([^_\s](?:[^_]*[^_\s])?)_(?!\w)|\[([^\]]+)\]\(([^()\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) out.push(document.createTextNode(text.slice(last, match.index)));
    const [whole, code, strong, strong2, em, em2, label, href, bare] = match;
    if (code !== undefined) out.push(el("code", [code]));
    else if (strong !== undefined || strong2 !== undefined) out.push(el("strong", inline(strong ?? strong2)));
    else if (em !== undefined || em2 !== undefined) out.push(el("em", inline(em ?? em2)));
    else if (label !== undefined) out.push(SAFE_URL.test(href) ? link(href, inline(label)) : document.createTextNode(whole));
    else if (bare !== undefined) out.push(link(bare, [bare]));
    last = match.index + whole.length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

function link(href, children) {
  return el("a", children, { href, rel: "noopener noreferrer", target: "_blank" });
}

/** Lines of one paragraph, joined by <br> (notes are typed, and their line breaks are meant). */
function paragraph(lines) {
  const children = [];
  lines.forEach((line, i) => {
    if (i) children.push(el("br"));
    children.push(...inline(line));
  });
  return el("p", children);
}

const LIST_ITEM = /^\s*([-*+]|\d{1,9}[.)])\s+(.*)$/;
const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
const FENCE = /^\s*```/;

/** Markdown text as a DocumentFragment of safe elements. */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  const lines = String(source ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    if (FENCE.test(line)) {
      const body = [];
      i += 1;
      while (i < lines.length && !FENCE.test(lines[i])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end)
      fragment.append(el("pre", [el("code", [body.join("\n")])]));
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      // Notes sit under the run's own <h1>: their headings start one level below the page's sections.
      const level = Math.min(6, heading[1].length + 2);
      fragment.append(el(`h${level}`, inline(heading[2])));
      i += 1;
      continue;
    }
    const item = line.match(LIST_ITEM);
    if (item) {
      const ordered = /\d/.test(item[1]);
      const list = el(ordered ? "ol" : "ul");
      if (ordered && parseInt(item[1], 10) !== 1) list.setAttribute("start", String(parseInt(item[1], 10)));
      while (i < lines.length) {
        const next = lines[i].match(LIST_ITEM);
        if (!next || /\d/.test(next[1]) !== ordered) break;
        list.append(el("li", inline(next[2])));
        i += 1;
      }
      fragment.append(list);
      continue;
    }
    const body = [];
    while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) && !HEADING.test(lines[i]) && !LIST_ITEM.test(lines[i])) {
      body.push(lines[i]);
      i += 1;
    }
    fragment.append(paragraph(body));
  }
  return fragment;
}
