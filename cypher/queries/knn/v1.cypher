// name: knn
// version: 1
// description: The graph's veto over model-mined negatives (the knn strategy). patentminer finds each
//   anchor's nearest neighbours among earlier patents with an embedding model and passes them in
//   similarity order; this query picks the positive (one cited patent, chosen by the seed, as in
//   citation-cpc) and says, for every candidate, which rule vetoes it, first match wins: 'positive' (the
//   positive itself), 'cites' (cited by or citing the anchor), 'two_hops' (within two citation hops of
//   the anchor, either direction), 'not_earlier' (not granted before the anchor), or '' (none). The
//   miner drops vetoed candidates (unless the veto is off, for the ablation; the positive is always
//   dropped), then applies the positive-aware margin and keeps the K most similar survivors.
// params:
//   $rows: List[Map] - {id: anchor id, cands: candidate ids in similarity order} per anchor
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
// returns: anchor_id, positive_id, checked (List of [candidate id, rule], in the order given)
UNWIND $rows AS row
MATCH (a:Patent {id: row.id})
CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES]-(x)
  RETURN collect(DISTINCT x) AS near
}
CALL (a, p, near, row) {
  UNWIND range(0, size(row.cands) - 1) AS i
  MATCH (n:Patent {id: row.cands[i]})
  WITH i, n, CASE
      WHEN n = p THEN 'positive'
      WHEN n IN near THEN 'cites'
      WHEN EXISTS { MATCH (n)-[:CITES]-(x) WHERE x IN near } THEN 'two_hops'
      WHEN NOT n.date < a.date THEN 'not_earlier'
      ELSE '' END AS rule
  ORDER BY i
  RETURN collect([n.id, rule]) AS checked
}
RETURN a.id AS anchor_id, p.id AS positive_id, checked
