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
    of a utility patent, drawn before repeated pairs are collapsed (the default gives about
    15 citation rows per patent at full scale, as the real dump has); cpc_per_patent: mean
    CPC rows per patent (the real dump: about 6); layout: "current" (abstract in
    g_patent_abstract) or "legacy" (patent_abstract inside g_patent); zip: write .tsv.zip;
    quirks: inject the dirt.
    """

    patents: int
    seed: int = 0
    citations_per_patent: float = 11.0
    cpc_per_patent: float = 6.0
    layout: str = "current"
    zip: bool = False
    quirks: bool = True

    def validate(self) -> None:
        if self.patents < 100:
            raise ConfigError(f"--patents {self.patents} is too small; use at least 100.")
        if self.layout not in ("current", "legacy"):
            raise ConfigError(f"layout {self.layout!r} is not valid; use 'current' or 'legacy'.")
        if not 0 < self.citations_per_patent <= 200:
            raise ConfigError(f"--citations-per-patent {self.citations_per_patent}: use a number in (0, 200].")
        if not 1 <= self.cpc_per_patent <= 50:
            raise ConfigError(f"--cpc-per-patent {self.cpc_per_patent}: use a number in [1, 50].")


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


@dataclass(frozen=True)
class _CpcPools:
    """Where a patent's further CPC symbols come from, as flat index arrays into ``symbols``: the
    level-0/1 symbols of each topic's main group (``group_*``, by main group), of each chosen subclass
    (``sub_*``, by subclass), and the world's topics (``topic_sym``)."""

    symbols: pl.Series
    topic_sym: np.ndarray
    topic_group: np.ndarray
    group_idx: np.ndarray
    group_off: np.ndarray
    group_len: np.ndarray
    sub_idx: np.ndarray
    sub_off: np.ndarray
    sub_len: np.ndarray


def _flat(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = np.array([len(x) for x in lists], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    return np.array([i for x in lists for i in x], dtype=np.int64), off, lens


def _pools(scheme: CpcScheme, topics: list[str], chosen_subs: list[str]) -> _CpcPools:
    place = {sym: i for i, sym in enumerate(scheme.topics)}
    by_group: dict[str, list[int]] = {}
    by_sub: dict[str, list[int]] = {}
    for i, sym in enumerate(scheme.topics):
        by_group.setdefault(split_symbol(sym)[3], []).append(i)
        by_sub.setdefault(sym[:4], []).append(i)
    groups = sorted({split_symbol(t)[3] for t in topics})
    group_of = {g: i for i, g in enumerate(groups)}
    group_idx, group_off, group_len = _flat([by_group[g] for g in groups])
    sub_idx, sub_off, sub_len = _flat([by_sub[s] for s in chosen_subs])
    return _CpcPools(pl.Series(scheme.topics, dtype=pl.String), np.array([place[t] for t in topics], dtype=np.int64),
                     np.array([group_of[split_symbol(t)[3]] for t in topics], dtype=np.int64),
                     group_idx, group_off, group_len, sub_idx, sub_off, sub_len)


#: Patents generated (and held) at a time: memory is one chunk plus a few integers per patent.
_CHUNK = 200_000
_PREFIX = {0: "", 1: "D", 2: "PP", 3: "RE"}
_TYPE_NAME = {0: "utility", 1: "design", 2: "plant", 3: "reissue"}
_WIPO_KIND = {0: "B2", 1: "S1", 2: "P2", 3: "E"}
_FIRST_NUMBER = {0: 3930271, 1: 238000, 2: 3987, 3: 28671}
_START = np.datetime64("1976-01-06", "D")
_GHOST_ID = "999999999"


@dataclass(frozen=True)
class _World:
    """What every chunk draws from: the topics and their words, and a few integers per patent."""

    topics: list[str]
    topic_sub: np.ndarray
    chosen_subs: list[str]
    by_sub: dict[str, list[str]]
    vocab: list[list[str]]
    group_vocab: list[list[str]]
    sub_vocab: dict[str, list[str]]
    facet_vocab: list[list[list[str]]]
    ptopic: np.ndarray
    ptype: np.ndarray
    pfacet: np.ndarray
    number: np.ndarray  # the id's digits
    week: np.ndarray  # grant date = _START + 7 * week
    k: np.ndarray  # citations drawn per patent
    # Patents sorted by topic (and by topic facet), for drawing earlier patents of a neighbourhood.
    order: np.ndarray
    t_start: np.ndarray
    rank: np.ndarray
    keys: np.ndarray
    order_f: np.ndarray
    g_start: np.ndarray
    rank_f: np.ndarray
    subs_of_topics: list[np.ndarray]
    pools: _CpcPools

    def ids(self, j: np.ndarray) -> pl.Series:
        prefix = pl.Series(self.ptype[j]).replace_strict(_PREFIX, return_dtype=pl.String)
        return prefix + pl.Series(self.number[j]).cast(pl.String)

    def dates(self, j: np.ndarray) -> pl.Series:
        return pl.Series(_START + 7 * self.week[j].astype("timedelta64[D]"))


def _world(config: SynthConfig, scheme: CpcScheme, rng: np.random.Generator) -> _World:
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
    weeks = (2024 - 1976) * 52
    week = (np.arange(n) * weeks) // n
    number = np.empty(n, dtype=np.int64)
    for pt, first in _FIRST_NUMBER.items():
        of_type = np.flatnonzero(ptype == pt)
        number[of_type] = first + np.arange(of_type.size)

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

    mean = config.citations_per_patent
    # Sampling within small neighbourhoods repeats pairs, which are collapsed below; 1.7x makes up for it.
    k = np.floor(np.exp(rng.normal(np.log(mean * 1.7) - 0.45, 0.95, size=n))).astype(np.int64)
    k = np.where(ptype == 1, k // 3, k)
    k = np.minimum(k, 250)
    k[0] = 0
    order = np.lexsort((np.arange(n), ptopic))
    t_sorted = ptopic[order]
    t_start = np.searchsorted(t_sorted, np.arange(n_topics))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - t_start[ptopic[order]]
    keys = t_sorted.astype(np.int64) * n + order
    group = ptopic.astype(np.int64) * _FACETS + pfacet
    order_f = np.lexsort((np.arange(n), group))
    g_sorted = group[order_f]
    g_start = np.searchsorted(g_sorted, np.arange(n_topics * _FACETS))
    rank_f = np.empty(n, dtype=np.int64)
    rank_f[order_f] = np.arange(n) - g_start[group[order_f]]
    subs_of_topics = [np.flatnonzero(topic_sub == s) for s in range(n_sub)]
    return _World(topics, topic_sub, chosen_subs, by_sub, vocab, group_vocab, sub_vocab, facet_vocab, ptopic,
                  ptype, pfacet, number, week, k, order, t_start, rank, keys, order_f, g_start, rank_f,
                  subs_of_topics, _pools(scheme, topics, chosen_subs))


def _texts(w: _World, a: int, b: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    titles: list[str] = []
    abstracts: list[str] = []
    r_words = rng.random((b - a, 32))
    for i in range(a, b):
        t = int(w.ptopic[i])
        v, gv, sv = w.vocab[t], w.group_vocab[t], w.sub_vocab[w.chosen_subs[w.topic_sub[t]]]
        fv = w.facet_vocab[t][int(w.pfacet[i])]
        r = r_words[i - a]

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
    return titles, abstracts


def _patent_chunk(w: _World, a: int, b: int, rng: np.random.Generator, config: SynthConfig,
                  quirks: dict[str, int]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(g_patent rows, g_patent_abstract rows, duplicated g_patent rows for the end of the file)."""
    n = b - a
    titles, abstracts = _texts(w, a, b, rng)
    withdrawn = np.zeros(n, dtype=np.int8)
    if config.quirks:
        wd = rng.choice(n, size=max(2, n // 300), replace=False)
        withdrawn[wd] = 1
        _count(quirks, "withdrawn", len(wd))
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
                if key == "title_with_tab":
                    titles[i] = fn(titles[i])
                else:
                    abstracts[i] = fn(abstracts[i])
            _count(quirks, key, len(sel))
    j = np.arange(a, b)
    ids = w.ids(j)
    pt = pl.Series(w.ptype[j])
    dates = w.dates(j)
    patent = pl.DataFrame({
        "patent_id": ids, "patent_type": pt.replace_strict(_TYPE_NAME, return_dtype=pl.String),
        "patent_date": dates.dt.strftime("%Y-%m-%d"), "patent_title": titles,
        "wipo_kind": pt.replace_strict(_WIPO_KIND, return_dtype=pl.String),
        "num_claims": rng.integers(1, 40, n), "withdrawn": withdrawn,
        "filename": dates.dt.strftime("ipg%y%m%d.xml"),
    })
    abstract = pl.DataFrame({"patent_id": ids, "patent_abstract": abstracts})
    dups = patent.clear()
    if config.quirks:
        dups = patent.sample(n=max(1, n // 2000), seed=int(rng.integers(1 << 31))).with_columns(
            pl.lit("DUPLICATE ROW: must lose to the first").alias("patent_title"))
        _count(quirks, "patent_duplicate_id", dups.height)
    if config.layout == "legacy":
        patent = patent.join(abstract, on="patent_id", how="left", maintain_order="left").select(
            "patent_id", "patent_type", "patent_date", "patent_title", "patent_abstract", "wipo_kind",
            "num_claims", "withdrawn", "filename")
        dups = dups.join(abstract, on="patent_id", how="left", maintain_order="left").select(patent.columns)
    return patent, abstract, dups


def _citation_chunk(w: _World, a: int, b: int, rng: np.random.Generator, config: SynthConfig,
                    quirks: dict[str, int]) -> pl.DataFrame:
    """Citations of patents a..b-1: earlier patents, mostly in the same CPC neighbourhood."""
    n = w.ptopic.size
    src = np.repeat(np.arange(a, b), w.k[a:b])
    m = len(src)
    u = rng.random(m)
    kind = rng.random(m)
    dst = np.floor(src * u).astype(np.int64)  # any earlier patent
    same = kind < 0.65
    r_same = w.rank[src[same]]
    has = r_same > 0
    pos = w.t_start[w.ptopic[src[same]]] + np.floor(r_same * rng.random(len(r_same)) ** 1.6).astype(np.int64)
    dst_same = np.where(has, w.order[np.minimum(pos, n - 1)], dst[same])
    # Three in four of these stay within the citing patent's facet when it has an earlier patent there.
    s_same = src[same]
    group = w.ptopic[s_same].astype(np.int64) * _FACETS + w.pfacet[s_same]
    r_f = w.rank_f[s_same]
    facet_ok = (r_f > 0) & (rng.random(len(s_same)) < 0.75)
    pos_f = w.g_start[group] + np.floor(r_f * rng.random(len(s_same)) ** 2.2).astype(np.int64)
    dst_same = np.where(facet_ok, w.order_f[np.minimum(pos_f, n - 1)], dst_same)
    dst[same] = dst_same
    near = (kind >= 0.65) & (kind < 0.85)
    if near.any():
        s_near = src[near]
        sub_topics = [w.subs_of_topics[w.topic_sub[w.ptopic[x]]] for x in s_near.tolist()]
        other = np.array([st[j % len(st)] for st, j in zip(sub_topics, rng.integers(0, 1 << 30, len(s_near)).tolist(),
                                                           strict=True)])
        cnt = np.searchsorted(w.keys, other.astype(np.int64) * n + s_near) - w.t_start[other]
        pos = w.t_start[other] + np.floor(cnt * rng.random(len(cnt))).astype(np.int64)
        dst[near] = np.where(cnt > 0, w.order[np.minimum(pos, n - 1)], dst[near])
    cited_dates = w.dates(dst)
    cit = pl.DataFrame({
        "__src": src, "patent_id": w.ids(src), "citation_sequence": np.zeros(m, dtype=np.int64),
        "citation_patent_id": w.ids(dst), "citation_date": cited_dates.dt.strftime("%Y-%m-01"),
        "record_name": pl.Series(np.array(_SURNAMES)[rng.integers(0, len(_SURNAMES), m)]),
        "__et_al": rng.random(m) < 0.4,
        "wipo_kind": pl.Series(np.where(cited_dates.dt.year().to_numpy() < 2001, "A", "B2")),
        "citation_category": pl.Series(np.array(_CATEGORIES)[rng.choice(3, size=m, p=[0.55, 0.4, 0.05])]),
    }).with_columns(
        pl.when(pl.col("__et_al")).then(pl.col("record_name") + " et al.").otherwise(pl.col("record_name"))
    ).drop("__et_al")
    if config.quirks and m:
        dangling = np.sort(rng.choice(m, size=max(1, m // 50), replace=False))
        numbers = 1_000_000 + rng.integers(0, 2_900_000, dangling.size)
        years = rng.integers(20, 75, dangling.size)
        months = rng.integers(1, 13, dangling.size)
        selfc = np.sort(rng.choice(m, size=max(1, m // 2000), replace=False))
        baddate = np.sort(rng.choice(m, size=max(1, m // 300), replace=False))
        bad_values = np.array(["1995-00-00", "0000-00-00", "", "1987-13-01", "2003-06"])[baddate % 5]
        cited = cit["citation_patent_id"].scatter(dangling, pl.Series(numbers).cast(pl.String))
        cited = cited.scatter(selfc, cit["patent_id"].gather(selfc))
        dates = cit["citation_date"].scatter(
            dangling, pl.Series([f"19{y}-{mo:02d}-01" for y, mo in zip(years.tolist(), months.tolist(), strict=True)]))
        dates = dates.scatter(baddate, pl.Series(bad_values))
        cit = cit.with_columns(citation_patent_id=cited, citation_date=dates)
        _count(quirks, "citation_dangling", dangling.size)
        _count(quirks, "citation_self", selfc.size)
        _count(quirks, "citation_bad_date", baddate.size)
    # Repeated (citing, cited) pairs in the real dump are rare; sampling makes many, so keep one each.
    cit = cit.unique(subset=["patent_id", "citation_patent_id"], keep="first", maintain_order=True)
    cit = cit.with_columns(pl.int_range(pl.len()).over("__src").alias("citation_sequence")).drop("__src")
    if config.quirks and m:
        dup = cit.sample(n=max(1, m // 1000), seed=int(rng.integers(1 << 31)), shuffle=False).with_columns(
            pl.col("citation_sequence") + 1000)
        cit = pl.concat([cit, dup])
        _count(quirks, "citation_repeated_pair", dup.height)
    # PatentsView keeps a patent's rows together (sorted by patent_id); so do we, within a chunk.
    return cit.sort("patent_id", maintain_order=True)


def _cpc_chunk(w: _World, a: int, b: int, rng: np.random.Generator, config: SynthConfig, ghosts: int,
               quirks: dict[str, int]) -> pl.DataFrame:
    """CPC rows of patents a..b-1: the topic's symbol first, then symbols of the same main group, the
    same subclass or any topic, about ``config.cpc_per_patent`` rows a patent (right-skewed, as in the
    real dump)."""
    n = b - a
    pools = w.pools
    mu = max(config.cpc_per_patent - 1.0, 1e-9)
    extra = np.minimum(rng.negative_binomial(2, 2 / (2 + mu), size=n), 60)
    draws = 2 * extra + 2  # drawn symbols repeat within small pools; extra draws make up for it
    pid = np.repeat(np.arange(a, b), draws)
    t = w.ptopic[pid]
    u = rng.random(pid.size)
    v = rng.random(pid.size)
    g = pools.topic_group[t]
    in_group = pools.group_idx[pools.group_off[g] + (v * pools.group_len[g]).astype(np.int64)]
    s = w.topic_sub[t]
    in_sub = pools.sub_idx[pools.sub_off[s] + (v * pools.sub_len[s]).astype(np.int64)]
    anywhere = pools.topic_sym[(v * pools.topic_sym.size).astype(np.int64)]
    sym = np.where(u < 0.5, in_group, np.where(u < 0.8, in_sub, anywhere))
    first = np.arange(a, b)
    all_pid = np.concatenate([first, pid])
    rows = pl.DataFrame({
        "pid": all_pid, "cap": extra[all_pid - a],
        "sym": np.concatenate([pools.topic_sym[w.ptopic[first]], sym]),
        "draw": np.concatenate([np.zeros(n, dtype=np.int64), np.arange(1, pid.size + 1)]),
    }).sort("pid", "draw").unique(subset=["pid", "sym"], keep="first", maintain_order=True)
    rows = rows.with_columns(pl.int_range(pl.len()).over("pid").alias("seq"))
    rows = rows.filter(pl.col("seq") <= pl.col("cap"))
    second_inventional = rng.random(n) < 0.3
    seq = rows["seq"].to_numpy()
    inventional = (seq == 0) | ((seq == 1) & second_inventional[rows["pid"].to_numpy() - a])
    cpc = pl.DataFrame({
        "patent_id": w.ids(rows["pid"].to_numpy()), "cpc_sequence": rows["seq"],
        "cpc_group": pools.symbols.gather(rows["sym"]),
        "cpc_type": pl.Series(np.where(inventional, "inventional", "additional")),
    }).with_columns(
        cpc_section=pl.col("cpc_group").str.slice(0, 1), cpc_class=pl.col("cpc_group").str.slice(0, 3),
        cpc_subclass=pl.col("cpc_group").str.slice(0, 4),
    ).select("patent_id", "cpc_sequence", "cpc_section", "cpc_class", "cpc_subclass", "cpc_group", "cpc_type")
    if config.quirks:
        dup = cpc.sample(n=max(1, cpc.height // 1000), seed=int(rng.integers(1 << 31)))
        # An id beyond any this generator makes (9999999 is a real one from ~6M patents on).
        ghost = cpc.head(ghosts).with_columns(pl.lit(_GHOST_ID).alias("patent_id"))
        cpc = pl.concat([cpc, dup, ghost])
        _count(quirks, "cpc_repeated_pair", dup.height)
        _count(quirks, "cpc_unknown_patent", ghost.height)
    return cpc.sort("patent_id", maintain_order=True)


def _count(quirks: dict[str, int], key: str, n: int) -> None:
    quirks[key] = quirks.get(key, 0) + n


def synth(out_dir: Path, config: SynthConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write g_patent, g_patent_abstract, g_us_patent_citation, g_cpc_current, g_cpc_title.

    Patents are generated and written 200,000 at a time (each chunk with its own seeded
    generator), so memory does not grow with ``config.patents``. Returns a summary with the
    rows written and the quirks injected per table. Files are written under a temporary
    name and renamed when all are complete.
    """
    config.validate()
    say = progress or (lambda _msg: None)
    rng = np.random.default_rng(config.seed)
    scheme = CpcScheme.load()
    out_dir.mkdir(parents=True, exist_ok=True)
    n = config.patents
    w = _world(config, scheme, rng)
    quirks: dict[str, int] = {}
    malformed = _malformed(config) if config.quirks else {}
    if malformed:
        quirks["malformed_rows"] = sum(len(v) for v in malformed.values())
    names = ["g_patent", "g_us_patent_citation", "g_cpc_current", "g_cpc_title"]
    if config.layout == "current":
        names.insert(1, "g_patent_abstract")
    writers = {name: _TableWriter(out_dir, name, config.zip, malformed.get(name, [])) for name in names}
    dups: list[pl.DataFrame] = []
    used: set[str] = set()
    try:
        for c, a in enumerate(range(0, n, _CHUNK)):
            b = min(n, a + _CHUNK)
            say(f"patents {a + 1:,}-{b:,} of {n:,}")
            crng = np.random.default_rng([config.seed, c])
            patent, abstract, dup = _patent_chunk(w, a, b, crng, config, quirks)
            writers["g_patent"].write(patent)
            if "g_patent_abstract" in writers:
                writers["g_patent_abstract"].write(abstract)
            dups.append(dup)
            writers["g_us_patent_citation"].write(_citation_chunk(w, a, b, crng, config, quirks))
            cpc = _cpc_chunk(w, a, b, crng, config, max(1, n // 1000) if c == 0 else 0, quirks)
            used.update(cpc["cpc_group"].unique().to_list())
            writers["g_cpc_current"].write(cpc)
        writers["g_patent"].write(pl.concat(dups))
        writers["g_cpc_title"].write(_title_rows(sorted(used), scheme))
        written = {name: wr.close() for name, wr in writers.items()}
    except BaseException:
        for wr in writers.values():
            wr.abort()
        raise
    return {"config": asdict(config), "rows": written, "quirks": quirks, "topics": len(w.topics),
            "subclasses": len(w.chosen_subs), "out_dir": str(out_dir)}


def _title_rows(used: list[str], scheme: CpcScheme) -> pl.DataFrame:
    rows = pl.DataFrame({"cpc_group": used}, schema={"cpc_group": pl.String}).with_columns(
        cpc_subclass=pl.col("cpc_group").str.slice(0, 4), cpc_class=pl.col("cpc_group").str.slice(0, 3))
    return rows.with_columns(
        cpc_subclass_title=pl.col("cpc_subclass").replace_strict(scheme.titles, default=""),
        cpc_group_title=pl.col("cpc_group").replace_strict(scheme.titles, default=""),
        cpc_class_title=pl.col("cpc_class").replace_strict(scheme.titles, default=""),
    ).select("cpc_subclass", "cpc_subclass_title", "cpc_group", "cpc_group_title", "cpc_class", "cpc_class_title")


def _malformed(config: SynthConfig) -> dict[str, list[bytes]]:
    legacy = b'"x"\t' if config.layout == "legacy" else b""
    return {
        "g_patent": [b'"9000001"\t"utility"\t"2001-01-02"\t"Truncated row"\n',
                     b'"9000002"\t"utility"\t"2001-01-02"\t"Bad claims"\t' + legacy
                     + b'"B2"\t12a\t0\t"ipg010102.xml"\n',
                     b'""\t"utility"\t"2001-01-02"\t"Missing id"\t' + legacy + b'"B2"\t3\t0\t"ipg010102.xml"\n'],
        "g_us_patent_citation": [b'"4000000"\t0\t"3999999"\n', b'"4000001"\tx\t"3999999"\t"1990-01-01"\t'
                                 b'"Smith"\t"A"\t"cited by examiner"\n'],
        "g_cpc_current": [b'"4000002"\t0\t"H"\n'],
    }


class _TableWriter:
    """One PatentsView TSV (text quoted, numbers bare) written chunk by chunk under a temporary name;
    ``bad_rows`` are spread through the first chunk."""

    def __init__(self, out_dir: Path, name: str, as_zip: bool, bad_rows: list[bytes]) -> None:
        self.name = name
        self.final = out_dir / (f"{name}.tsv.zip" if as_zip else f"{name}.tsv")
        self.tmp = self.final.with_name(self.final.name + ".partial")
        self.bad_rows = bad_rows
        self.rows = 0
        self.zf: zipfile.ZipFile | None = None
        if as_zip:
            self.zf = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
            self.fh: Any = self.zf.open(f"{name}.tsv", "w", force_zip64=True)
        else:
            self.fh = self.tmp.open("wb")

    def write(self, df: pl.DataFrame) -> None:
        first = self.rows == 0
        pieces = len(self.bad_rows) + 1 if first else 1
        step = max(1, -(-df.height // pieces))
        for p in range(pieces):
            buf = io.BytesIO()
            df.slice(p * step, step).write_csv(buf, separator="\t", quote_style="non_numeric",
                                               include_header=first and p == 0, line_terminator="\n")
            self.fh.write(buf.getvalue().replace(_BAD_BYTE_MARK.encode(), b"\xe9"))
            if first and p < len(self.bad_rows):
                self.fh.write(self.bad_rows[p])
        self.rows += df.height + (len(self.bad_rows) if first else 0)

    def close(self) -> int:
        self.fh.close()
        if self.zf:
            self.zf.close()
        self.tmp.replace(self.final)
        return self.rows

    def abort(self) -> None:
        self.fh.close()
        if self.zf:
            self.zf.close()
        self.tmp.unlink(missing_ok=True)
