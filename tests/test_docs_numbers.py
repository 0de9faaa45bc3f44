"""The default experiment's numbers live in one place, docs/BENCHMARKS.md: README.md and
config/README.md point to its section by name instead of restating them (they disagreed)."""
import re

from conftest import REPO

POINTERS = ["README.md", "config/README.md"]
SECTION = "The default experiment now"


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


def test_the_docs_point_to_a_section_of_benchmarks_that_exists():
    headings = re.findall(r"^## (.+)$", (REPO / "docs/BENCHMARKS.md").read_text(), re.M)
    for doc in POINTERS:
        quoted = re.findall(r'BENCHMARKS\.md[^"\n]{0,4}"([^"]+)"', (REPO / doc).read_text())
        named = {" ".join(name.split()) for name in quoted}  # a name may wrap onto the next line
        assert SECTION in named, f"{doc} does not point to BENCHMARKS' {SECTION!r}"
        missing = {name for name in named if not any(h.startswith(name) for h in headings)}  # "(session 9)" may follow
        assert not missing, f"{doc} names sections BENCHMARKS.md does not have: {missing}"


def test_the_default_experiments_accuracy_is_written_only_in_benchmarks():
    section = _section((REPO / "docs/BENCHMARKS.md").read_text(), SECTION)
    accuracy = next(block for block in section.split("\n\n") if block.startswith("| artifact | mAP50-95"))
    figures = set(re.findall(r"\| (?:\*\*)?(0\.\d{3})(?:\*\*)? \|", accuracy))  # the accuracy table's values
    assert len(figures) >= 4, section
    for doc in POINTERS:
        text = (REPO / doc).read_text()
        assert not [f for f in figures if re.search(rf"(?<![\d.]){re.escape(f)}(?!\d)", text)], doc
