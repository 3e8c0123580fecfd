"""How tests/data/corpora was made: a small, fixed sample of the two real corpora.

    python tests/data/make_sample.py /path/to/shared/corpora

Re-running it on the same snapshot gives the same files (the choice is by name and by a
fixed stride, not random). The tests rely on the names listed here being in the sample;
see tests/data/corpora/README.md for the sources and licences.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Pages the tests name (tests/conftest.py copy_tldr callers), then unusual shapes: punctuation
# file names, a hidden page (`..md`, skipped by the scan), the longest pages.
TLDR_NAMED = ("tar", "grep", "ssh", "curl", "git-commit", "rsync", "find", "chmod", "ping",
              "!", "[", "{", "$", ".", "ldapsearch", "hledger-balance", "nuclei", "yt-dlp")
TLDR_STRIDE = {"common": 18, "linux": 22, "osx": 10}  # every Nth page by name: ~260 + ~90 + ~37

# RFCs: the longest with code and deep headings, tables, the few that are not specifications
# (roadmaps, reports, plans), the shortest, RFCs ending in empty sections (headings with no
# body), and a stride for the ordinary ones.
RFCS_NAMED = (
    "0001-private-fields", "0060-rename-strbuf", "0534-deriving2derive",  # shortest
    "1398-kinds-of-allocators", "2094-nll",  # long: code blocks, deep heading trees
    "1824-crates.io-default-ranking", "1252-open-options", "3945-inherit-default-features",  # tables
    "1774-roadmap-2017", "2834-cargo-report-future-incompat", "3007-panic-plan", "1058-slice-tail-redesign",
    "2005-match-ergonomics", "2394-async_await", "2229-capture-disjoint-fields", "3128-io-safety",
    "2945-c-unwind-abi", "0599-default-object-bound",
)
RFC_STRIDE = 100


def main(source: Path, dest: Path) -> int:
    tldr_src, rfc_src = source / "tldr" / "pages", source / "rust-rfcs" / "text"
    if not (tldr_src.is_dir() and rfc_src.is_dir()):
        print(f"error: {source} has no tldr/pages and rust-rfcs/text", file=sys.stderr)
        return 1
    for old in (dest / "tldr", dest / "rust-rfcs"):  # README.md (the attribution) stays
        if old.exists():
            shutil.rmtree(old)
    for sub, stride in TLDR_STRIDE.items():
        pages = sorted((tldr_src / sub).glob("*.md"))
        chosen = set(pages[::stride]) | {p for p in pages if p.name in {f"{n}.md" for n in TLDR_NAMED}}
        (dest / "tldr" / "pages" / sub).mkdir(parents=True)
        for page in sorted(chosen):
            shutil.copy(page, dest / "tldr" / "pages" / sub / page.name)
    rfcs = sorted(rfc_src.glob("*.md"))
    chosen = set(rfcs[::RFC_STRIDE]) | {p for p in rfcs if p.stem in RFCS_NAMED}
    missing = set(RFCS_NAMED) - {p.stem for p in chosen}
    if missing:
        print(f"error: RFCs not in {rfc_src}: {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    (dest / "rust-rfcs" / "text").mkdir(parents=True)
    for rfc in sorted(chosen):
        shutil.copy(rfc, dest / "rust-rfcs" / "text" / rfc.name)
    shutil.copy(source / "tldr" / "LICENSE.md", dest / "tldr" / "LICENSE.md")
    for name in ("LICENSE-MIT", "LICENSE-APACHE"):
        shutil.copy(source / "rust-rfcs" / name, dest / "rust-rfcs" / name)
    files = [p for p in dest.rglob("*.md") if p.parent.name in ("text", *TLDR_STRIDE)]
    print(f"{len(files)} files, {sum(p.stat().st_size for p in files) / 1024:.0f} KiB in {dest}")
    return 0


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    default = here.parents[2] / "shared" / "corpora"
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default, here / "corpora"))
