"""Synthetic PatentsView granted-patent tables, at any scale, deterministic per seed.

The structure is what mining and training rely on: citations only to earlier patents,
heavy-tailed citation counts, citations concentrated in CPC neighbourhoods, a real CPC
hierarchy (the 2022.08 title list shipped in ``etl/data``), and title/abstract text drawn
from the titles of a patent's CPC groups, so a text encoder can learn who cites whom.
The files carry the quirks of the real dump: quoted fields with tabs, newlines and
doubled quotes, a few non-UTF-8 bytes, design/plant/reissue ids, citations to patents
outside the table, self and repeated citations, partial dates, withdrawn and duplicated
patents, and a few unparseable rows.

Example::

    synth(Path("data/synth"), SynthConfig(patents=20_000, seed=7))
"""

from __future__ import annotations

import io
import lzma
import re
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from patentminer.errors import ConfigError

# The synthetic generator writes U+FFFF where the real files have a stray Latin-1 byte;
# it is swapped for the raw byte 0xE9 after encoding, since Polars only writes UTF-8.
_BAD_BYTE_MARK = "\uffff"

_PREFIXES = ("System and method for", "Apparatus for", "Method of", "Device for", "Arrangement for",
             "Process for", "Composition for", "Assembly for", "")
_SURNAMES = ("Smith", "Johnson", "Tanaka", "Müller", "Garcia", "Kim", "Chen", "Rossi", "Dubois", "Nguyen",
             "Kowalski", "O'Brien", "Larsen", "Silva", "Yamamoto", "Schmidt", "Patel", "Ivanov")
_CATEGORIES = ("cited by applicant", "cited by examiner", "cited by other")
_STOP = {"or", "and", "the", "of", "for", "in", "on", "a", "an", "to", "with", "by", "from", "not", "their",
         "its", "as", "at", "be", "is", "are", "e", "g", "i", "specially", "adapted", "using", "other",
         "than", "being", "characterised", "such", "which", "therefor", "thereof", "this", "these"}


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    patents: rows of g_patent (before duplicates); citations_per_patent: mean citations
    of a utility patent; layout: "current" (abstract in g_patent_abstract) or "legacy"
    (patent_abstract inside g_patent); zip: write .tsv.zip; quirks: inject the dirt.
    """

    patents: int
    seed: int = 0
    citations_per_patent: float = 10.0
    layout: str = "current"
    zip: bool = False
    quirks: bool = True

    def validate(self) -> None:
        if self.patents < 100:
            raise ConfigError(f"--patents {self.patents} is too small; use at least 100.")
        if self.layout not in ("current", "legacy"):
            raise ConfigError(f"layout {self.layout!r} is not valid; use 'current' or 'legacy'.")
        if not 0 < self.citations_per_patent <= 200:
            raise ConfigError("citations_per_patent must be in (0, 200].")


@dataclass(frozen=True)
class CpcScheme:
    """The CPC hierarchy and titles the generator draws from."""

    titles: dict[str, str]
    topics: list[str]  # main groups and first-level subgroups

    @staticmethod
    def load() -> CpcScheme:
        raw = resources.files("patentminer.etl").joinpath("data/cpc_titles_2022.08_l1.tsv.xz").read_bytes()
        titles: dict[str, str] = {}
        topics: list[str] = []
        for line in lzma.decompress(raw).decode("utf-8").splitlines()[1:]:
            symbol, level, title = line.split("\t", 2)
            titles[symbol] = title
            if level in ("0", "1"):
                topics.append(symbol)
        return CpcScheme(titles, topics)


_FACETS = 4


def split_symbol(symbol: str) -> tuple[str, str, str, str]:
    """``H04L9/0643`` -> (section ``H``, class ``H04``, subclass ``H04L``, main group ``H04L9/00``)."""
    return symbol[0], symbol[:3], symbol[:4], symbol.split("/")[0] + "/00"


def _clean_words(title: str) -> list[str]:
    title = re.sub(r"\([^)]*\)|\{|\}|\[[^\]]*\]", " ", title)
    return [w for w in re.findall(r"[A-Za-z][A-Za-z-]+", title.lower()) if w not in _STOP and len(w) > 2]


def synth(out_dir: Path, config: SynthConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write g_patent, g_patent_abstract, g_us_patent_citation, g_cpc_current, g_cpc_title.

    Returns a summary with the rows written and the quirks injected per table.
    Files are written under a temporary name and renamed when complete.
    """
    config.validate()
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(config.seed)
    scheme = CpcScheme.load()
    out_dir.mkdir(parents=True, exist_ok=True)
    n = config.patents

    # -- topics: a Zipf-weighted subset of real CPC groups, clustered by subclass --------------
    subclasses = sorted({split_symbol(t)[2] for t in scheme.topics})
    sub_order = rng.permutation(len(subclasses))
    n_sub = int(min(len(subclasses), max(8, n // 400)))
    chosen_subs = [subclasses[i] for i in sub_order[:n_sub]]
    by_sub: dict[str, list[str]] = {}
    for sym in scheme.topics:
        by_sub.setdefault(sym[:4], []).append(sym)
    # About 60 patents a topic: small topics make repeated pairs, which cleaning collapses, and dilute the
    # share of citations that stay in a CPC neighbourhood.
    n_topics = int(max(20, min(n // 60, 40_000)))
    sub_w = 1.0 / np.arange(1, n_sub + 1) ** 0.8
    topic_subs = rng.choice(n_sub, size=n_topics * 2, p=sub_w / sub_w.sum())
    topics: list[str] = []
    seen: set[str] = set()
    for s in topic_subs:
        cands = by_sub[chosen_subs[s]]
        sym = cands[int(rng.integers(len(cands)))]
        if sym not in seen:
            seen.add(sym)
            topics.append(sym)
        if len(topics) == n_topics:
            break
    n_topics = len(topics)
    topic_sub = np.array([chosen_subs.index(sym[:4]) for sym in topics])
    topic_group = [split_symbol(sym)[3] for sym in topics]

    # -- patents in grant order ------------------------------------------------------------------
    tw = 1.0 / np.arange(1, n_topics + 1) ** 0.6
    ptopic = rng.choice(n_topics, size=n, p=tw / tw.sum())
    ptype = rng.choice(4, size=n, p=[0.93, 0.05, 0.01, 0.01])  # utility, design, plant, reissue
    start = date(1976, 1, 6)
    weeks = (2024 - 1976) * 52
    week = (np.arange(n) * weeks) // n
    dates = [start + timedelta(days=7 * int(w)) for w in week]
    counters = {0: 3930271, 1: 238000, 2: 3987, 3: 28671}
    prefix = {0: "", 1: "D", 2: "PP", 3: "RE"}
    type_name = {0: "utility", 1: "design", 2: "plant", 3: "reissue"}
    ids: list[str] = []
    for pt in ptype.tolist():
        ids.append(f"{prefix[pt]}{counters[pt]}")
        counters[pt] += 1

    say(f"texts for {n:,} patents")
    vocab = [_clean_words(scheme.titles.get(sym, "")) or ["device"] for sym in topics]
    group_vocab = [_clean_words(scheme.titles.get(g, "")) or ["apparatus"] for g in topic_group]
    sub_vocab = {s: _clean_words(scheme.titles.get(s, "")) or ["system"] for s in chosen_subs}
    # Facets: within a topic, patents work on one of a few aspects, each with its own words (taken from
    # other CPC entries of the same subclass), and citations inside a topic prefer the same facet. The
    # text then says more than the topic: who cites whom within a CPC subgroup is learnable, which is
    # what hard negatives from that subgroup teach and random ones cannot.
    facet_vocab: list[list[list[str]]] = []
    for t, sym in enumerate(topics):
        pool = [x for x in by_sub[sym[:4]] if x != sym] or [topic_group[t]]
        picks = rng.choice(len(pool), size=_FACETS, replace=len(pool) < _FACETS)
        own = set(vocab[t])
        facet_vocab.append([[w for w in _clean_words(scheme.titles.get(pool[int(j)], "")) if w not in own]
                            or group_vocab[t] for j in picks])
    pfacet = rng.integers(0, _FACETS, size=n)
    titles: list[str] = []
    abstracts: list[str] = []
    r_words = rng.random((n, 32))
    for i in range(n):
        t = int(ptopic[i])
        v, gv, sv = vocab[t], group_vocab[t], sub_vocab[chosen_subs[topic_sub[t]]]
        fv = facet_vocab[t][int(pfacet[i])]
        r = r_words[i]

        def pick(words: list[str], k: int, off: int, r: np.ndarray = r) -> str:
            return " ".join(words[int(r[off + j] * len(words))] for j in range(k))

        pre = _PREFIXES[int(r[0] * len(_PREFIXES))]
        titles.append(f"{pre} {pick(v, 2, 1)} {pick(fv, 1, 3)} {pick(gv, 1, 4)}".strip().capitalize())
        abstracts.append(
            f"A {pick(v, 2, 5)} for {pick(fv, 2, 24)} is disclosed. The {pick(gv, 2, 7)} comprises a "
            f"{pick(v, 2, 9)} coupled to a {pick(sv, 2, 11)}. In some embodiments the {pick(fv, 2, 26)} "
            f"{pick(v, 1, 13)} provides {pick(gv, 2, 16)} and {pick(sv, 2, 18)}. Further {pick(fv, 2, 28)} "
            f"{pick(v, 2, 20)} {pick(gv, 2, 22)}."
        )

    withdrawn = np.zeros(n, dtype=np.int8)
    quirks: dict[str, int] = {}
    if config.quirks:
        w = rng.choice(n, size=max(2, n // 300), replace=False)
        withdrawn[w] = 1
        quirks["withdrawn"] = len(w)
        for key, sel, fn in (
            ("title_with_tab", rng.choice(n, max(1, n // 500), replace=False),
             lambda s: s.replace(" ", "\t", 1)),
            ("abstract_with_newline", rng.choice(n, max(1, n // 400), replace=False),
             lambda s: s.replace(". ", ".\n", 2)),
            ("abstract_with_quotes", rng.choice(n, max(1, n // 300), replace=False),
             lambda s: s.replace("The ", 'The so-called "', 1).replace(" comprises", '" comprises', 1)),
            ("abstract_non_utf8", rng.choice(n, max(1, n // 5000), replace=False),
             lambda s: s.replace(" is ", f" caf{_BAD_BYTE_MARK} is ", 1)),
        ):
            for i in sel.tolist():
                abstracts[i] = fn(abstracts[i]) if key != "title_with_tab" else abstracts[i]
                if key == "title_with_tab":
                    titles[i] = fn(titles[i])
            quirks[key] = len(sel)

    # -- citations: earlier patents, mostly in the same CPC neighbourhood ---------------------
    say("citations")
    mean = config.citations_per_patent
    # Sampling within small neighbourhoods repeats pairs, which are collapsed below; 1.7x makes up for it.
    k = np.floor(np.exp(rng.normal(np.log(mean * 1.7) - 0.45, 0.95, size=n))).astype(np.int64)
    k = np.where(ptype == 1, k // 3, k)
    k = np.minimum(k, 250)
    k[0] = 0
    src = np.repeat(np.arange(n), k)
    m = len(src)
    order = np.lexsort((np.arange(n), ptopic))
    t_sorted = ptopic[order]
    t_start = np.searchsorted(t_sorted, np.arange(n_topics))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - t_start[ptopic[order]]
    keys = t_sorted.astype(np.int64) * n + order
    u = rng.random(m)
    kind = rng.random(m)
    dst = np.floor(src * u).astype(np.int64)  # any earlier patent
    same = kind < 0.65
    r_same = rank[src[same]]
    has = r_same > 0
    pos = t_start[ptopic[src[same]]] + np.floor(r_same * rng.random(len(r_same)) ** 1.6).astype(np.int64)
    dst_same = np.where(has, order[np.minimum(pos, n - 1)], dst[same])
    # Three in four of these stay within the citing patent's facet when it has an earlier patent there.
    group = ptopic.astype(np.int64) * _FACETS + pfacet
    order_f = np.lexsort((np.arange(n), group))
    g_sorted = group[order_f]
    g_start = np.searchsorted(g_sorted, np.arange(n_topics * _FACETS))
    rank_f = np.empty(n, dtype=np.int64)
    rank_f[order_f] = np.arange(n) - g_start[group[order_f]]
    s_same = src[same]
    r_f = rank_f[s_same]
    facet_ok = (r_f > 0) & (rng.random(len(s_same)) < 0.75)
    pos_f = g_start[group[s_same]] + np.floor(r_f * rng.random(len(s_same)) ** 2.2).astype(np.int64)
    dst_same = np.where(facet_ok, order_f[np.minimum(pos_f, n - 1)], dst_same)
    dst[same] = dst_same
    near = (kind >= 0.65) & (kind < 0.85)
    if near.any():
        s_near = src[near]
        subs_of_topics = [np.flatnonzero(topic_sub == s) for s in range(n_sub)]
        other = np.array([subs_of_topics[topic_sub[ptopic[x]]][j % len(subs_of_topics[topic_sub[ptopic[x]]])]
                          for x, j in zip(s_near.tolist(), rng.integers(0, 1 << 30, len(s_near)).tolist(),
                                          strict=True)])
        cnt = np.searchsorted(keys, other.astype(np.int64) * n + s_near) - t_start[other]
        pos = t_start[other] + np.floor(cnt * rng.random(len(cnt))).astype(np.int64)
        dst[near] = np.where(cnt > 0, order[np.minimum(pos, n - 1)], dst[near])
    seq = np.arange(m) - np.repeat(np.cumsum(k) - k, k)
    cited = [ids[j] for j in dst.tolist()]
    citing = [ids[j] for j in src.tolist()]
    cite_dates = [f"{dates[j].year:04d}-{dates[j].month:02d}-01" for j in dst.tolist()]
    cats = [_CATEGORIES[c] for c in rng.choice(3, size=m, p=[0.55, 0.4, 0.05]).tolist()]
    names = [f"{_SURNAMES[a]}{' et al.' if b else ''}"
             for a, b in zip(rng.integers(0, len(_SURNAMES), m).tolist(), (rng.random(m) < 0.4).tolist(),
                             strict=True)]
    kinds = ["A" if dates[j].year < 2001 else "B2" for j in dst.tolist()]
    if config.quirks and m:
        dangling = rng.choice(m, size=max(1, m // 50), replace=False)
        for i in dangling.tolist():
            cited[i] = str(1_000_000 + int(rng.integers(0, 2_900_000)))
            cite_dates[i] = f"19{int(rng.integers(20, 75))}-{int(rng.integers(1, 13)):02d}-01"
        selfc = rng.choice(m, size=max(1, m // 2000), replace=False)
        for i in selfc.tolist():
            cited[i] = citing[i]
        baddate = rng.choice(m, size=max(1, m // 300), replace=False)
        for i in baddate.tolist():
            cite_dates[i] = ("1995-00-00", "0000-00-00", "", "1987-13-01", "2003-06")[i % 5]
        quirks.update(citation_dangling=len(dangling), citation_self=len(selfc), citation_bad_date=len(baddate))
    cit = pl.DataFrame({
        "__src": src, "patent_id": citing, "citation_sequence": seq, "citation_patent_id": cited,
        "citation_date": cite_dates, "record_name": names, "wipo_kind": kinds, "citation_category": cats,
    })
    # Repeated (citing, cited) pairs in the real dump are rare; sampling makes many, so keep one each.
    cit = cit.unique(subset=["patent_id", "citation_patent_id"], keep="first", maintain_order=True)
    cit = cit.with_columns(
        (pl.int_range(pl.len()).over("__src")).alias("citation_sequence")).drop("__src")
    if config.quirks and m:
        dup = cit.sample(n=max(1, m // 1000), seed=config.seed, shuffle=False).with_columns(
            pl.col("citation_sequence") + 1000)
        cit = pl.concat([cit, dup]).sort("patent_id", maintain_order=True)
        quirks["citation_repeated_pair"] = dup.height

    # -- CPC assignments -----------------------------------------------------------------------
    say("CPC assignments")
    extra = rng.choice(5, size=n, p=[0.3, 0.3, 0.2, 0.12, 0.08])
    cpc_pid: list[str] = []
    cpc_seq: list[int] = []
    cpc_sym: list[str] = []
    cpc_type: list[str] = []
    r_extra = rng.random((n, 8))
    for i in range(n):
        t = int(ptopic[i])
        syms = [topics[t]]
        s_topics = by_sub[topics[t][:4]]
        for j in range(int(extra[i])):
            r = r_extra[i, j]
            if r < 0.5:
                cand = [x for x in s_topics[:200] if x.split("/")[0] == topics[t].split("/")[0]] or s_topics
            elif r < 0.8:
                cand = s_topics
            else:
                cand = topics
            sym = cand[int(r_extra[i, j + 4] * len(cand))]
            if sym not in syms:
                syms.append(sym)
        for j, sym in enumerate(syms):
            cpc_pid.append(ids[i])
            cpc_seq.append(j)
            cpc_sym.append(sym)
            cpc_type.append("inventional" if j == 0 or (j == 1 and r_extra[i, 7] < 0.3) else "additional")
    cpc = pl.DataFrame({"patent_id": cpc_pid, "cpc_sequence": cpc_seq, "cpc_group": cpc_sym,
                        "cpc_type": cpc_type}).with_columns(
        cpc_section=pl.col("cpc_group").str.slice(0, 1), cpc_class=pl.col("cpc_group").str.slice(0, 3),
        cpc_subclass=pl.col("cpc_group").str.slice(0, 4),
    ).select("patent_id", "cpc_sequence", "cpc_section", "cpc_class", "cpc_subclass", "cpc_group", "cpc_type")
    if config.quirks:
        dup = cpc.sample(n=max(1, cpc.height // 1000), seed=config.seed + 1)
        ghost = cpc.head(max(1, n // 1000)).with_columns(pl.lit("9999999").alias("patent_id"))
        # PatentsView keeps a patent's rows together (sorted by patent_id); so do we.
        cpc = pl.concat([cpc, dup, ghost]).sort("patent_id", maintain_order=True)
        quirks.update(cpc_repeated_pair=dup.height, cpc_unknown_patent=ghost.height)

    # -- tables --------------------------------------------------------------------------------
    say("writing files")
    patent = pl.DataFrame({
        "patent_id": ids, "patent_type": [type_name[pt] for pt in ptype.tolist()],
        "patent_date": [d.isoformat() for d in dates], "patent_title": titles,
        "wipo_kind": [("B2", "S1", "P2", "E")[pt] for pt in ptype.tolist()],
        "num_claims": rng.integers(1, 40, n), "withdrawn": withdrawn,
        "filename": [f"ipg{d.strftime('%y%m%d')}.xml" for d in dates],
    })
    abstract = pl.DataFrame({"patent_id": ids, "patent_abstract": abstracts})
    if config.quirks:
        dups = patent.sample(n=max(1, n // 2000), seed=config.seed + 2).with_columns(
            pl.lit("DUPLICATE ROW: must lose to the first").alias("patent_title"))
        patent = pl.concat([patent, dups])
        quirks["patent_duplicate_id"] = dups.height
    if config.layout == "legacy":
        patent = patent.join(abstract, on="patent_id", how="left", maintain_order="left").select(
            "patent_id", "patent_type", "patent_date", "patent_title", "patent_abstract", "wipo_kind",
            "num_claims", "withdrawn", "filename")

    malformed: dict[str, list[bytes]] = {}
    if config.quirks:
        malformed = {
            "g_patent": [b'"9000001"\t"utility"\t"2001-01-02"\t"Truncated row"\n',
                         b'"9000002"\t"utility"\t"2001-01-02"\t"Bad claims"\t' +
                         (b'"x"\t' if config.layout == "legacy" else b"") + b'"B2"\t12a\t0\t"ipg010102.xml"\n',
                         b'""\t"utility"\t"2001-01-02"\t"Missing id"\t' +
                         (b'"x"\t' if config.layout == "legacy" else b"") + b'"B2"\t3\t0\t"ipg010102.xml"\n'],
            "g_us_patent_citation": [b'"4000000"\t0\t"3999999"\n', b'"4000001"\tx\t"3999999"\t"1990-01-01"\t'
                                     b'"Smith"\t"A"\t"cited by examiner"\n'],
            "g_cpc_current": [b'"4000002"\t0\t"H"\n'],
        }
        quirks["malformed_rows"] = sum(len(v) for v in malformed.values())
    written: dict[str, int] = {}
    tables: list[tuple[str, pl.DataFrame]] = [("g_patent", patent), ("g_us_patent_citation", cit),
                                              ("g_cpc_current", cpc)]
    if config.layout == "current":
        tables.insert(1, ("g_patent_abstract", abstract))
    used = sorted(set(cpc_sym))
    title_rows = pl.DataFrame({"cpc_group": used}).with_columns(
        cpc_subclass=pl.col("cpc_group").str.slice(0, 4), cpc_class=pl.col("cpc_group").str.slice(0, 3))
    title_rows = title_rows.with_columns(
        cpc_subclass_title=pl.col("cpc_subclass").replace_strict(scheme.titles, default=""),
        cpc_group_title=pl.col("cpc_group").replace_strict(scheme.titles, default=""),
        cpc_class_title=pl.col("cpc_class").replace_strict(scheme.titles, default=""),
    ).select("cpc_subclass", "cpc_subclass_title", "cpc_group", "cpc_group_title", "cpc_class", "cpc_class_title")
    tables.append(("g_cpc_title", title_rows))
    for name, df in tables:
        written[name] = _write_table(out_dir, name, df, malformed.get(name, []), config.zip)
    summary = {"config": asdict(config), "rows": written, "quirks": quirks, "topics": n_topics,
               "subclasses": n_sub, "out_dir": str(out_dir)}
    return summary


def _write_table(out_dir: Path, name: str, df: pl.DataFrame, bad_rows: list[bytes], as_zip: bool) -> int:
    """Write ``df`` as PatentsView TSV (text quoted, numbers bare) with ``bad_rows`` spread through it."""
    final = out_dir / (f"{name}.tsv.zip" if as_zip else f"{name}.tsv")
    tmp = final.with_name(final.name + ".partial")
    pieces = max(1, len(bad_rows) + 1)
    step = -(-df.height // pieces)

    def chunks() -> Any:
        for p in range(pieces):
            buf = io.BytesIO()
            part = df.slice(p * step, step)
            part.write_csv(buf, separator="\t", quote_style="non_numeric", include_header=(p == 0),
                           line_terminator="\n")
            data = buf.getvalue().replace(_BAD_BYTE_MARK.encode(), b"\xe9")
            yield data
            if p < len(bad_rows):
                yield bad_rows[p]

    if as_zip:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
                zf.open(f"{name}.tsv", "w", force_zip64=True) as fh:
            for data in chunks():
                fh.write(data)
    else:
        with tmp.open("wb") as fh:
            for data in chunks():
                fh.write(data)
    tmp.replace(final)
    return df.height + len(bad_rows)
