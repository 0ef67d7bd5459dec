// name: random
// version: 2
// description: Same rows as v1, faster. The baseline: uniformly random earlier patents as negatives.
//   patentminer samples the candidates with the seeded generator (Neo4j's rand() cannot be seeded) and
//   passes them in order; the query keeps, in that order, the first $k that are earlier than the anchor
//   and pass the false-negative guard (not within two citation hops). Positive: one cited patent.
//   What changed from v1: the anchor's two-hop neighbourhood is no longer materialised; candidates are
//   tested lazily, in order, against the anchor's neighbours (not one of them, sharing none) until $k pass.
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
  OPTIONAL MATCH (a)-[:CITES]-(x)
  RETURN collect(DISTINCT x) AS near
}
CALL (a, p, near, row) {
  UNWIND range(0, size(row.cands) - 1) AS i
  WITH a, p, near, i, row.cands[i] AS cid
  MATCH (n:Patent {id: cid})
  WHERE n.date < a.date AND n <> p
  WITH near, n, i ORDER BY i
  WITH n WHERE CASE WHEN NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(x) WHERE x IN near } ELSE false END
  LIMIT $k
  RETURN collect(n.id) AS negs
}
RETURN a.id AS anchor_id, p.id AS positive_id, negs AS negative_ids, 'random' AS level
