// name: citation-cpc
// version: 4
// description: Hard negatives from the CPC neighbourhood of a cited patent. Positive: one patent the anchor
//   cites (chosen by the seed). Negatives: patents classified like the positive - same CPC subgroup first,
//   widening to its main group and then its subclass when fewer than $k remain - granted before the
//   anchor and not within two citation hops of it in either direction (false-negative guard), the first
//   $k in a seeded order ((rk * multiplier) mod 2^31-1). The rows of v1-v3 wherever rk tells patents
//   apart (it does for PatentsView's utility, design, plant and reissue ids); where two patents share an
//   rk, v1-v3 order them by id and v4 by element id. What changed from v3: candidates are ordered by the
//   rk their CLASSIFIED_AS relationship carries (import format 2), read from the subgroup's
//   relationships, which the import lays side by side, instead of from every candidate's node, which it
//   cannot (a patent sits in several subgroups); a node is read only for the candidates walked in order
//   until $k pass the date test and the guard.
// params:
//   $ids: List[String] - anchor patent ids of one batch
//   $k: Integer = 3 - hard negatives per anchor
//   $pos_mul: Integer - seed-derived odd multiplier that orders the anchor's citations
//   $neg_mul: Integer - seed-derived odd multiplier that orders candidate negatives
// returns: anchor_id, positive_id, negative_ids (List[String], at most $k), level (subgroup|group|subclass)
UNWIND $ids AS aid
MATCH (a:Patent {id: aid})
CALL (a) {
  MATCH (a)-[:CITES]->(p:Patent)
  RETURN p ORDER BY (p.rk * $pos_mul) % 2147483647, p.id LIMIT 1
}
CALL (a) {
  OPTIONAL MATCH (a)-[:CITES]-(m)
  RETURN collect(DISTINCT m) AS near
}
CALL (a, p, near) {
  MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)<-[r:CLASSIFIED_AS]-(n)
  WHERE n <> p
  WITH n, min(r.rk) AS rk
  ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  WITH n WHERE CASE WHEN n.date < a.date AND NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(m) WHERE m IN near } ELSE false END
  LIMIT $k
  RETURN collect(n) AS n1
}
CALL (a, p, near, n1) {
  WITH a, p, near, n1 WHERE size(n1) < $k
  MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)<-[:PART_OF]-(:CPCSubgroup)
        <-[r:CLASSIFIED_AS]-(n)
  WHERE n <> p AND NOT n IN n1
  WITH n, min(r.rk) AS rk
  ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  WITH n WHERE CASE WHEN n.date < a.date AND NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(m) WHERE m IN near } ELSE false END
  LIMIT $k
  RETURN collect(n) AS n2
}
CALL (a, p, near, n1, n2) {
  WITH a, p, near, n1, n2 WHERE size(n1) + size(n2) < $k
  MATCH (p)-[:CLASSIFIED_AS]->(:CPCSubgroup)-[:PART_OF]->(:CPCGroup)-[:PART_OF]->(:CPCSubclass)
        <-[:PART_OF]-(:CPCGroup)<-[:PART_OF]-(:CPCSubgroup)<-[r:CLASSIFIED_AS]-(n)
  WHERE n <> p AND NOT n IN n1 AND NOT n IN n2
  WITH n, min(r.rk) AS rk
  ORDER BY (rk * $neg_mul) % 2147483647, elementId(n)
  WITH n WHERE CASE WHEN n.date < a.date AND NOT n IN near
               THEN NOT EXISTS { MATCH (n)-[:CITES]-(m) WHERE m IN near } ELSE false END
  LIMIT $k
  RETURN collect(n) AS n3
}
RETURN a.id AS anchor_id, p.id AS positive_id, [n IN (n1 + n2 + n3)[..$k] | n.id] AS negative_ids,
       CASE WHEN size(n1) >= $k THEN 'subgroup' WHEN size(n1) + size(n2) >= $k THEN 'group' ELSE 'subclass' END
         AS level
