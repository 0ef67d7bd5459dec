// name: random
// version: 1
// description: The baseline: uniformly random earlier patents as negatives. patentminer samples
//   the candidates with the seeded generator (Neo4j's rand() cannot be seeded) and passes them in
//   order; the query keeps, in that order, the first $k that are earlier than the anchor and pass
//   the false-negative guard (not within two citation hops). Positive: one cited patent.
// params:
//   $rows: List[Map] - {id: anchor id, cands: candidate ids in sampled order} per anchor
//   $k: Integer = 3 - negatives per anchor
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
// returns: anchor_id, positive_id, negative_ids (List[String], at most $k), level (random)
UNWIND $rows AS row
MATCH (a:Patent {id: row.id})
CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES*1..2]-(x:Patent)
  RETURN collect(DISTINCT x) AS guard
}
CALL (a, p, guard, row) {
  UNWIND range(0, size(row.cands) - 1) AS i
  WITH a, p, guard, i, row.cands[i] AS cid
  MATCH (n:Patent {id: cid})
  WHERE n.date < a.date AND n <> a AND n <> p AND NOT n IN guard
  WITH n, i ORDER BY i LIMIT $k
  RETURN collect(n.id) AS negs
}
RETURN a.id AS anchor_id, p.id AS positive_id, negs AS negative_ids, 'random' AS level
