// name: citation-of-citation
// version: 2
// description: Same rows as v1, faster. SPECTER-style negatives. Positive: one patent the anchor cites
//   (chosen by the seed). Negatives: patents the positive cites that the anchor does not cite, granted
//   before the anchor. The false-negative guard excludes patents citing or cited by the anchor and
//   patents two hops away through any patent other than the positive (the hop through the positive is
//   what makes these candidates, so it cannot exclude them). What changed from v1: the anchor's two-hop
//   neighbourhood is no longer materialised; the positive's citations are ordered first and tested
//   lazily against the anchor's neighbours (not one of them, sharing none but the positive) until $k pass.
// params:
//   $ids: List[String] - anchor patent ids of one batch
//   $k: Integer = 3 - hard negatives per anchor
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
//   $neg_mul: Integer - seed-derived odd multiplier that orders candidate negatives
// returns: anchor_id, positive_id, negative_ids (List[String], at most $k), level (citation-of-citation)
UNWIND $ids AS aid
MATCH (a:Patent {id: aid})
CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  WHERE EXISTS { (p)-[:CITES]->(:Patent) }
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES]-(x)
  RETURN collect(DISTINCT x) AS near
}
CALL (a, p, near) {
  MATCH (p)-[:CITES]->(n:Patent)
  WHERE n.date < a.date
  WITH DISTINCT n
  ORDER BY (n.rk * $neg_mul) % 2147483647, n.id
  WITH n WHERE CASE WHEN NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(x) WHERE x <> p AND x IN near } ELSE false END
  LIMIT $k
  RETURN collect(n.id) AS negs
}
RETURN a.id AS anchor_id, p.id AS positive_id, negs AS negative_ids, 'citation-of-citation' AS level
