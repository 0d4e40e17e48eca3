"""Read one file into sections, or fail with a reason a person can act on.

Supported: our bank format (markdown with `part:` front matter), markdown, plain text and scraped
articles, HTML (main content only) and PDF (pypdf). Everything else is refused with a clear reason.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

from coach.bank import BankError, is_bank_file, parse_bank_file
from ingest.sections import Detection, Section, detect, entry_title

TEXT_TYPES = {".md", ".markdown", ".txt", ".text"}
HTML_TYPES = {".html", ".htm"}
PDF_TYPES = {".pdf"}
SUPPORTED = TEXT_TYPES | HTML_TYPES | PDF_TYPES
# Page furniture that is never the article: dropped before the text is read.
HTML_NOISE = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
              "iframe", "svg", "button", "figure"]
HTML_NOISE_CLASS = re.compile(r"share|social|comment|related|sidebar|menu|breadcrumb|newsletter|"
                              r"cookie|banner|advert|promo|subscribe|author-bio", re.I)
# Text a reader never sees must never become a cited answer: an attacker hides instructions or fake
# facts in display:none, zero-size, transparent or white-on-white elements.
HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*(?:hidden|collapse)|opacity\s*:\s*0(?:\.0+)?\s*(?:;|$)|"
                          r"font-size\s*:\s*0(?:\.0+)?(?:px|em|rem|pt|%)?\s*(?:;|$)|"
                          r"(?:^|;)\s*(?:width|height|max-width|max-height)\s*:\s*0(?:px)?\s*(?:;|$)|"
                          r"clip\s*:\s*rect\(\s*0|text-indent\s*:\s*-\d{3,}", re.I)
WHITE = r"(?:#fff(?:fff)?|white|rgba?\(\s*255\s*,\s*255\s*,\s*255)"
WHITE_TEXT = re.compile(r"(?:^|;)\s*color\s*:\s*" + WHITE, re.I)
BACKGROUND = re.compile(r"background(?:-color)?\s*:\s*([^;]+)", re.I)
HIDDEN_CLASS = re.compile(r"^(?:hidden|d-none|sr-only|visually-hidden|screen-reader-text|invisible)$", re.I)
# Markup that survives as text once entities are decoded ("&lt;img onerror=...&gt;" -> "<img ...>"):
# it is never content, and shown anywhere it could become a live tag.
TAG_TEXT = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]{0,500})?/?>")


class LoadError(Exception):
    """The file cannot be ingested; the message says why."""


def load_file(path: Path, source: str, max_bytes: int) -> tuple[str, list[Section]]:
    """Return (kind, sections) for one file; kind is 'bank', 'article' or 'document'."""
    kind, found = read_document(path, source, max_bytes)
    return kind, found.sections


def read_document(path: Path, source: str, max_bytes: int) -> tuple[str, Detection]:
    """(kind, detection): the sections of one file and what was dropped from it (for the preview)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise LoadError(f"unsupported file type '{suffix or path.name}' "
                        f"(supported: {', '.join(sorted(SUPPORTED))})")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit")
        if size == 0:
            raise LoadError("file is empty")
        data = path.read_bytes()
    except PermissionError:
        raise LoadError("cannot read the file: permission denied") from None
    except IsADirectoryError:
        raise LoadError("is a directory, not a file") from None
    except OSError as exc:
        raise LoadError(f"cannot read the file: {exc.strerror or exc}") from None
    if suffix in PDF_TYPES:
        text = pdf_text(data)
    else:
        text = decode_text(data)
        if suffix in HTML_TYPES:
            text = html_text(text)
        elif is_bank_file(text):
            return "bank", Detection(sections=bank_sections(text, source))
    if not text.strip():
        raise LoadError("no text found in the file")
    found = detect(text, fallback_title=_title(path))
    if not found.sections:
        raise LoadError("no content left after removing page furniture" +
                        (f" ({len(found.dropped)} parts dropped, e.g. {found.dropped[0]['kind']})" if found.dropped else ""))
    return ("article" if any(s.number is not None for s in found.sections) else "document"), found


def decode_text(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError("binary content, not text (NUL bytes found)")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise LoadError("binary content, not text (not valid UTF-8)")
    # cp1252 decodes nearly anything: a large share of control characters means it was not text.
    controls = sum(ch < " " and ch not in "\t\n\r\f" for ch in text[:8192])
    if controls > 0.01 * max(1, len(text[:8192])):
        raise LoadError("binary content, not text")
    return text


def bank_sections(text: str, source: str) -> list[Section]:
    try:
        entries = parse_bank_file(text, source)
    except BankError as exc:
        raise LoadError(f"malformed question bank entry: {exc}") from None
    return [Section(question=e.question, text=e.answer, number=e.number, part=e.part, topic=e.topic,
                    difficulty=e.difficulty, qid=e.id, asked_as=e.asked_as) for e in entries]


def html_text(html: str) -> str:
    """Main content of a page as markdown-like text: headings kept as '#', list items as '-'."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(HTML_NOISE):
        tag.decompose()
    for tag in soup.find_all(_is_hidden):
        if not tag.decomposed:
            tag.decompose()
    for tag in soup.find_all(attrs={"class": HTML_NOISE_CLASS}) + soup.find_all(id=HTML_NOISE_CLASS):
        if not tag.decomposed:
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.find(attrs={"role": "main"}) or soup.body or soup
    _markdown_blocks(root)
    for level in range(1, 7):
        for h in root.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for li in root.find_all("li"):
        links = " ".join(a.get_text(" ", strip=True) for a in li.find_all("a"))
        lead = _leading_bold(li)
        title = lead.get_text(" ", strip=True) if lead else ""
        if lead:
            lead.decompose()
        own = li.get_text(" ", strip=True)
        # A list item that is only a link is a table of contents or navigation entry, never content.
        if links and links == own and not title:
            li.replace_with("\n")
        else:  # "1." for an ordered list's item (its number kept), a bold lead on a line of its own
            mark = f"{_item_number(li)}." if li.parent is not None and li.parent.name == "ol" else "-"
            li.replace_with(f"\n{mark} **{title}**\n\n{own}\n" if title else f"\n{mark} {own}\n")
    _bold_paragraphs(root)
    for block in root.find_all(["p", "div", "section", "blockquote", "tr", "br", "details", "dd", "dl"]):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    text = TAG_TEXT.sub("", root.get_text())
    lines, in_code = [], False
    for line in text.split("\n"):
        if line.strip() in ("```", "~~~"):
            in_code = not in_code
        lines.append(line.rstrip() if in_code else re.sub(r"[ \t\xa0]+", " ", line).strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _markdown_blocks(root) -> None:
    """The structures a question page is built from, as the markdown the rest of ingest reads: FAQ
    entries (<details><summary>, <dt>/<dd>) as bold question lines, tables as pipe tables, <pre> as
    fenced code (kept whole by chunking, rendered as code)."""
    for tag in root.find_all(["summary", "dt"]):
        tag.replace_with(f"\n{entry_title(tag.get_text(' ', strip=True))}\n")
    for pre in root.find_all("pre"):
        code = pre.get_text().strip("\n")
        fence = "~~~" if "```" in code else "```"
        pre.replace_with(f"\n\n{fence}\n{code}\n{fence}\n\n")
    for table in root.find_all("table"):
        rows = [[" ".join(c.get_text(" ", strip=True).split()).replace("|", "\\|") for c in tr.find_all(["th", "td"])]
                for tr in table.find_all("tr")]
        rows = [r for r in rows if any(r)]
        if not rows:
            table.decompose()
            continue
        width = max(len(r) for r in rows)
        lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * width)
        table.replace_with("\n\n" + "\n".join(lines) + "\n\n")


def _bold_paragraphs(root) -> None:
    """A paragraph that is all bold ("<p><strong>What is SGD? ⭐</strong></p>") keeps its bold as markdown:
    it is how question collections mark their questions, and section detection reads it."""
    for tag in root.find_all(["strong", "b"]):
        parent = tag.parent
        text = tag.get_text(" ", strip=True)
        if text and parent is not None and parent.name in ("p", "div") and parent.get_text(" ", strip=True) == text:
            tag.replace_with(f"**{text}**")


def _leading_bold(item):
    """The <strong>/<b> a list item opens with (directly or in its first paragraph), or None."""
    node = item
    for _ in range(2):
        first = next((c for c in node.children if getattr(c, "name", None) or str(c).strip()), None)
        if getattr(first, "name", None) in ("strong", "b"):
            return first
        if getattr(first, "name", None) != "p":
            return None
        node = first
    return None


def _item_number(item) -> int:
    """An ordered list item's number: the list's start plus the items before it."""
    try:
        start = int(item.parent.get("start", 1))
    except ValueError:
        start = 1
    return start + sum(1 for sibling in item.find_previous_siblings("li"))


def _is_hidden(tag) -> bool:
    """An element the page never shows: hidden attributes, hiding styles, hiding utility classes."""
    if tag.has_attr("hidden") or str(tag.get("aria-hidden", "")).lower() == "true":
        return True
    if tag.name == "input" and str(tag.get("type", "")).lower() == "hidden":
        return True
    style = str(tag.get("style", ""))
    if HIDDEN_STYLE.search(style) or (WHITE_TEXT.search(style) and _on_white(tag)):
        return True
    return any(HIDDEN_CLASS.match(name) for name in tag.get("class", []) or [])


def _on_white(tag) -> bool:
    """White text is hidden unless it or an ancestor sets a background that is not white."""
    for node in [tag, *tag.parents]:
        found = BACKGROUND.search(str(node.get("style", "")) if hasattr(node, "get") else "")
        if found:
            return bool(re.match(WHITE, found.group(1).strip(), re.I))
    return True


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    if not data.lstrip()[:5] == b"%PDF-":
        raise LoadError("not a PDF: the content does not start with %PDF-")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise LoadError("the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
    except LoadError:
        raise
    except Exception as exc:  # pypdf raises many kinds: limits (compression bombs), malformed streams, recursion
        raise LoadError(f"unreadable PDF ({type(exc).__name__}): {exc}") from None
    # A glyph without a Unicode mapping (an emoji difficulty mark after a question) comes out as NUL.
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", "\n\n".join(pages))
    if not text.strip():
        raise LoadError("the PDF has no extractable text (scanned images?)")
    return text


def _title(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().capitalize() or path.name
