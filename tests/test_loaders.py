"""Every loader on real inputs: the scraped seed article, HTML pages, PDFs, markdown, text, bad files."""
from __future__ import annotations

import re

import pytest

from conftest import SEED
from ingest.loaders import LoadError, load_file

MB = 2**20

BOILERPLATE_MARKERS = ["Site icon", "Conclusion", "Related Read", "Exit mobile version", "Resources",
                       "Welcome to Part", "Stay with us"]


def load(path, max_bytes=20 * MB):
    return load_file(path, path.name, max_bytes)


def test_seed_article_becomes_ten_numbered_questions():
    kind, sections = load(SEED)
    raw = SEED.read_text(encoding="utf-8")
    assert kind == "article"
    assert [s.number for s in sections] == list(range(21, 31))
    for section in sections:
        # The title is exactly the heading line of the scraped page.
        heading = re.search(rf"^{section.number}\. (.+)$", raw, re.M).group(1).strip()
        assert section.question == heading
        assert section.part == 3
        assert section.text, f"question {section.number} lost its answer"
        for marker in BOILERPLATE_MARKERS:
            assert marker not in section.text, f"boilerplate {marker!r} in question {section.number}"
    topics = {s.number: s.topic for s in sections}
    assert topics[28] == "retrieval-augmented generation"
    assert topics[29] == "prompt injection"
    assert topics[27] == "catastrophic forgetting"


def test_seed_article_keeps_inner_numbered_steps_and_drops_orphan_list_intros():
    _, sections = load(SEED)
    diffusion = next(s for s in sections if s.number == 22)
    assert re.search(r"^\s+1\. ", diffusion.text, re.M)  # indented steps stay inside the answer
    for section in sections:
        lines = [line for line in section.text.split("\n") if line.strip()]
        for line, following in zip(lines, lines[1:] + [""], strict=True):
            if line.rstrip().endswith(":") and len(line) < 80:
                # A list introduction must still have its list; the scraper lost several.
                assert re.match(r"^\s+\S|^\s*([-*]|\d+\.)\s", following), (section.number, line)


HTML_PAGE = """<!doctype html><html><head><title>DL questions</title><style>body{}</style>
<script>var tracking = "Sign up now";</script></head><body>
<header><nav><a href="/">Home</a> <a href="/blog">Blog</a> Subscribe to our newsletter</nav></header>
<aside class="sidebar">Popular posts: ten tricks for Kaggle</aside>
<main><article>
<h1>Deep learning questions, part 1</h1>
<p>A short intro about this page that nobody needs.</p>
<h2>1. What does dropout do during training?</h2>
<p>Dropout zeroes a random subset of activations at every training step.</p>
<ul><li>Each unit is kept with probability p.</li><li>At test time all units are used.</li></ul>
<h2>2. Why normalise activations?</h2>
<p>Normalisation keeps activation scales stable, which allows larger learning rates.</p>
<div class="share-buttons">Share on Twitter</div>
</article></main>
<footer>Copyright 2025 Example Blog. All rights reserved.</footer>
</body></html>"""


def test_html_keeps_main_content_only(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(HTML_PAGE)
    kind, sections = load(page)
    assert kind == "article"
    assert [s.number for s in sections] == [1, 2]
    assert sections[0].question == "What does dropout do during training?"
    assert sections[0].part == 1
    text = "\n".join(s.text for s in sections)
    assert "- Each unit is kept with probability p." in text  # list items survive as a list
    for noise in ["Home", "newsletter", "Popular posts", "Share on Twitter", "Copyright", "tracking"]:
        assert noise not in text


def test_pdf_numbered_questions(tmp_path):
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=11)
    lines = ["Interview notes", "", "1. What is weight decay?",
             "Weight decay shrinks weights toward zero at every update.", "",
             "2. How does early stopping regularise?",
             "Training halts when validation loss stops improving."]
    for line in lines:
        pdf.cell(0, 8, line, new_x="LMARGIN", new_y="NEXT")
    path = tmp_path / "notes.pdf"
    pdf.output(str(path))
    kind, sections = load(path)
    assert [(s.number, s.question) for s in sections] == [
        (1, "What is weight decay?"), (2, "How does early stopping regularise?")]
    assert "shrinks weights" in sections[0].text


def test_markdown_without_numbers_is_cut_at_headings(tmp_path):
    doc = tmp_path / "notes.md"
    doc.write_text("# My notes\n\n## Label smoothing\n\nSoft targets stop the model from becoming "
                   "over-confident.\n\n## Mixup\n\nMixup blends pairs of images and their labels.\n")
    kind, sections = load(doc)
    assert kind == "document"
    assert [s.question for s in sections] == ["Label smoothing", "Mixup"]
    assert sections[1].text == "Mixup blends pairs of images and their labels."


def test_plain_text_without_structure_is_one_section(tmp_path):
    doc = tmp_path / "gradient_clipping.txt"
    doc.write_text("Gradient clipping rescales the gradient when its norm exceeds a threshold.\n\n"
                   "It is common when training recurrent networks.\n")
    _, sections = load(doc)
    assert len(sections) == 1
    assert sections[0].question == "Gradient clipping"
    assert "recurrent networks" in sections[0].text


def test_bank_file_keeps_its_metadata():
    from conftest import ROOT

    path = sorted((ROOT / "corpus").glob("*.md"))[0]
    kind, sections = load(path)
    assert kind == "bank"
    assert all(s.qid and s.difficulty in ("easy", "medium", "hard") and s.part for s in sections)


@pytest.mark.parametrize("name, content, reason", [
    ("slides.pptx", b"PK\x03\x04 zip", "unsupported file type"),
    ("empty.md", b"", "empty"),
    ("blob.txt", bytes(range(256)) * 8, "binary"),
    ("broken.pdf", b"%PDF-1.4\n this is not really a pdf", "PDF"),
    ("fake.pdf", b"just text pretending", "not a PDF"),
    ("latin.txt", "caf\xe9 au lait".encode("utf-16"), "binary"),
    ("big.md", b"word " * 300_000, "limit"),
    ("furniture.txt", b"Exit mobile version\nShare this:\n", "no content"),
])
def test_bad_files_are_refused_with_a_clear_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(LoadError, match=reason):
        load(path, max_bytes=1 * MB)


def test_malformed_bank_entry_names_file_and_line(tmp_path):
    path = tmp_path / "part9.md"
    path.write_text("---\npart: 9\ntitle: Broken\n---\n\n## 1. Fine?\n\n```yaml\nid: p9-fine\ntopic: t\n"
                    "difficulty: easy\nkey_points: [a, b, c]\n```\n\nAnswer.\n\n## 2. Broken?\n\n```yaml\n"
                    "id: p9-broken\ntopic: t\ndifficulty: trivial\nkey_points: [a, b, c]\n```\n\nAnswer.\n")
    with pytest.raises(LoadError, match=r"part9.md:22: difficulty 'trivial'"):
        load(path)


@pytest.mark.parametrize("name, stem, suffix", [("../../etc/passwd.md", "passwd", ".md"),
                                                ("..\\..\\boot.ini.txt", "boot.ini", ".txt"),
                                                (".hidden.md", "hidden-", ".md"), ("my notes (v2).PDF", "my-notes-v2-", ".pdf"),
                                                ("", "upload-", ""), ("résumé.md", "r-sum-", ".md")])
def test_upload_names_are_sanitised(name, stem, suffix):
    """Only the file name, in safe characters; a name that cleaning changed carries a short hash of the
    original, so two uploads never land on one file."""
    import re

    from ingest.uploads import safe_name

    safe = safe_name(name)
    assert safe.startswith(stem) and safe.endswith(suffix) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", safe)
    assert safe_name(name) == safe
