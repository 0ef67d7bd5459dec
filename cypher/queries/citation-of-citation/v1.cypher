// name: citation-of-citation
// version: 1
// description: SPECTER-style negatives. Positive: one patent the anchor cites (chosen by the seed).
//   Negatives: patents the positive cites that the anchor does not cite, granted before the anchor.
//   The false-negative guard excludes patents citing or cited by the anchor and patents two hops
//   away through any patent other than the positive (the hop through the positive is what makes
//   these candidates, so it cannot exclude them).
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
CALL (a, p) {
  OPTIONAL MATCH (a)-[:CITES]-(x:Patent)
  WITH a, p, collect(DISTINCT x) AS near
  OPTIONAL MATCH (a)-[:CITES]-(m:Patent)-[:CITES]-(y:Patent) WHERE m <> p
  WITH near, collect(DISTINCT y) AS far
  RETURN near + far AS guard
}
CALL (a, p, guard) {
  MATCH (p)-[:CITES]->(n:Patent)
  WHERE n.date < a.date AND n <> a AND NOT n IN guard
  WITH DISTINCT n
  ORDER BY (n.rk * $neg_mul) % 2147483647, n.id LIMIT $k
  RETURN collect(n.id) AS negs
}
RETURN a.id AS anchor_id, p.id AS positive_id, negs AS negative_ids, 'citation-of-citation' AS level
