"""Every number the README's verdict section and docs/results.md quote comes from a file
the report writes: each decimal number there (1.5, −0.0039, 2.5e-3) occurs, as written,
in a report-written file (report.md, claims/confirm/registered JSON, the per-layer and
trajectory tables). A number typed by hand, or left behind when the report changed,
fails. Integers (counts, seeds, steps) and numbers inside links are not checked."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["reports/reduced/report.md", "reports/reduced/claims.json",
           "reports/reduced/registered_v1.json", "reports/confirm-v2/report.md",
           "reports/confirm-v2/confirm.json", "reports/per_layer/per_layer.md",
           "reports/trajectory/trajectory.md"]
NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+\.\d+(?:e[-+−]?\d+)?(?![\w.])|(?<![\w.])\d+e[-+−]\d+(?![\w.])")
LINK = re.compile(r"\]\([^)]*\)|`[^`]*`")


def _norm(token: str) -> str:
    return token.replace("−", "-").lstrip("+-")


def _corpus() -> str:
    return "\n".join((ROOT / p).read_text() for p in SOURCES if (ROOT / p).exists()).replace("−", "-")


def _verdict_text() -> dict[str, str]:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Did the claims hold?")
    end = readme.index("\n## ", start + 1)
    return {"README.md (Did the claims hold?)": readme[start:end],
            "docs/results.md": (ROOT / "docs" / "results.md").read_text()}


def unsourced(text: str, corpus: str) -> list[str]:
    """The decimal numbers of ``text`` (outside links and code spans) not in ``corpus``."""
    text = LINK.sub("", text)
    return [t for t in NUMBER.findall(text) if _norm(t) not in corpus]


def test_every_quoted_number_comes_from_a_report_file():
    corpus = _corpus()
    bad = {name: unsourced(text, corpus) for name, text in _verdict_text().items()}
    assert not any(bad.values()), bad


def test_a_hand_typed_number_is_caught():
    corpus = _corpus()
    assert unsourced("the cell sits at −0.123456789 [0.1, 0.2]", corpus)[0] == "−0.123456789"
    assert unsourced("see [the table](reports/x.md) and `0.987654321`", corpus) == []
